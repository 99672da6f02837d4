using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Frontend;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo frontend</c>: the OpenAI-compatible HTTP frontend (with the preprocessor) over etcd and NATS
/// (NATS_SERVER, ETCD_ENDPOINTS; localhost by default), serving every model whose workers register.
/// </summary>
internal static class FrontendCommand
{
    public static Command Create()
    {
        var port = new Option<int>("--http-port", "--port") { Description = "HTTP port", DefaultValueFactory = _ => 8000 };
        var host = new Option<string>("--http-host", "--host") { Description = "Address to listen on", DefaultValueFactory = _ => "0.0.0.0" };
        var router = new Option<string>("--router-mode") { Description = "round-robin, random or kv", DefaultValueFactory = _ => "round-robin" };
        var ns = new Option<string>("--namespace") { Description = "Runtime namespace whose models are served", DefaultValueFactory = _ => "dynamo" };
        var jsonLogs = new Option<bool>("--json-logs") { Description = "One JSON object per log line" };
        var command = new Command("frontend", "OpenAI-compatible HTTP frontend for the workers found through etcd and NATS")
        {
            port, host, router, ns, jsonLogs,
        };
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            var settings = new FrontendSettings
            {
                HttpPort = parse.GetValue(port),
                Host = parse.GetValue(host)!,
                RouterMode = parse.GetValue(router)!,
                Namespace = parse.GetValue(ns)!,
                JsonLogs = parse.GetValue(jsonLogs),
                KvRouter = kv.Read(parse),
            };
            return RunAsync(settings, cancellationToken);
        });
        return command;
    }

    internal static FrontendOptions ToOptions(FrontendSettings settings)
    {
        FrontendOptions options = FrontendOptions.Default with
        {
            Host = settings.Host,
            HttpPort = settings.HttpPort,
            JsonLogs = settings.JsonLogs,
            Processing = ProcessorOptions.Default with
            {
                Namespace = settings.Namespace,
                RouterMode = settings.RouterMode,
                KvRouter = settings.KvRouter,
            },
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        return options;
    }

    private static async Task<int> RunAsync(FrontendSettings settings, CancellationToken cancellationToken)
    {
        FrontendOptions options = ToOptions(settings);
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(TimeSpan.FromSeconds(10), shutdown.Token);
        await using FrontendServer server = await FrontendServer.StartAsync(runtime, options, CliLogging.Create(settings.JsonLogs), shutdown.Token);
        Console.Error.WriteLine($"frontend: listening on {server.BaseAddress} ({runtime.Mode}: {runtime.Discovery.Address}); models appear as workers register");
        try
        {
            await Task.Delay(Timeout.Infinite, shutdown.Token);
        }
        catch (OperationCanceledException)
        {
        }

        return 0;
    }
}
