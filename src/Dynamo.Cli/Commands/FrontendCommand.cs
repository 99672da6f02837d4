using System.CommandLine;
using Dynamo.Frontend;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using OpenTelemetry.Trace;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo frontend</c>: the OpenAI-compatible HTTP frontend (with the preprocessor) over etcd and NATS
/// (NATS_SERVER, ETCD_ENDPOINTS; localhost by default), serving every model whose workers register.
/// </summary>
internal static class FrontendCommand
{
    public static Command Create()
    {
        var command = new Command("frontend", "OpenAI-compatible HTTP frontend for the workers found through etcd and NATS");
        FrontendFlags flags = FrontendFlags.AddTo(command, withNamespace: true);
        Option<double?> waitForInfra = RuntimeConnection.AddWaitForInfra(command);
        TracingFlags tracing = TracingFlags.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            FrontendOptions options = flags.Read(parse).Validate();
            return RunAsync(options, RuntimeConnection.FromEnvironment(), RuntimeConnection.ReadWaitForInfra(parse, waitForInfra), tracing.Read(parse, "dynamo-frontend"), cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(FrontendOptions options, RuntimeOptions runtimeOptions, TimeSpan? waitForInfra, TracingOptions tracing, CancellationToken cancellationToken)
    {
        using TracerProvider? tracer = CliTracing.Start(tracing, Console.Error, "frontend");
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, waitForInfra, "frontend", shutdown.Token);
        await using FrontendServer server = await FrontendServer.StartAsync(runtime, options, CliLogging.Create(options.JsonLogs), shutdown.Token);
        Console.Error.WriteLine($"frontend: listening on {Listeners.Describe(options.Host, server.BaseAddress.Port, "--http-host")} ({runtime.Mode}: {runtime.Discovery.Address}; {server.AccessNote}); models appear as workers register");
        if (options.Processing.RouterMode == RouterModes.Kv)
        {
            Console.Error.WriteLine($"frontend: the KV router predicts the workers' caches from {KvRouterFlags.CacheSource(options.Processing.KvRouter)}");
        }

        try
        {
            await Task.Delay(Timeout.Infinite, shutdown.Token);
        }
        catch (OperationCanceledException)
        {
        }

        Console.Error.WriteLine($"frontend: shutting down: no new requests; those in flight get up to {options.ShutdownDrainTimeout.TotalSeconds:0.#} s to finish (a second signal stops at once)");
        using CancellationTokenRegistration forced = RuntimeConnection.ForcedShutdown.Register(() => Console.Error.WriteLine("frontend: stopping at once (second signal); the streams still in flight end with a shutting_down error"));
        await server.ShutdownAsync(RuntimeConnection.ForcedShutdown);
        return 0;
    }
}
