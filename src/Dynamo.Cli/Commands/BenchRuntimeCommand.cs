using System.CommandLine;
using Dynamo.Load.Benchmarks;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench runtime</c>: request round trip p50/p99 and streaming throughput over the in-process
/// planes and over NATS (NATS_SERVER / ETCD_ENDPOINTS, localhost by default). <c>--role server</c> only
/// serves the bench endpoint and <c>--role client</c> only measures, to measure across hosts.
/// </summary>
internal static class BenchRuntimeCommand
{
    public static Command Create()
    {
        var transports = new Option<string>("--transport") { Description = "Comma-separated: inproc, nats", DefaultValueFactory = _ => "inproc,nats" };
        var role = new Option<string>("--role") { Description = "both (serve and measure in this process), server, or client", DefaultValueFactory = _ => "both" };
        var label = new Option<string?>("--label") { Description = "Name of the nats row in the report (e.g. 'nats across namespaces')" };
        var requests = new Option<int>("--requests") { Description = "Sequential one-response round trips", DefaultValueFactory = _ => 2000 };
        var responses = new Option<int>("--stream-responses") { Description = "Responses per stream", DefaultValueFactory = _ => 20000 };
        var size = new Option<int>("--response-bytes") { Description = "Bytes per streamed response", DefaultValueFactory = _ => 256 };
        var streams = new Option<int>("--streams") { Description = "Concurrent streams", DefaultValueFactory = _ => 4 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("runtime", "Request plane: round trip p50/p99 and streaming responses/s and MB/s, in-process and over NATS")
        {
            transports, role, label, requests, responses, size, streams, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            string r = parse.GetValue(role)!;
            if (r is not ("both" or "server" or "client"))
            {
                throw new CliUsageException($"--role: '{r}' is not both, server or client");
            }

            string[] kinds = parse.GetValue(transports)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (kinds.Length == 0 || kinds.Any(k => k is not ("inproc" or "nats")))
            {
                throw new CliUsageException($"--transport: '{parse.GetValue(transports)}' must list inproc and/or nats");
            }

            int n = parse.GetValue(requests), m = parse.GetValue(responses), b = parse.GetValue(size), s = parse.GetValue(streams);
            if (n < 1 || m < 1 || b < 0 || s < 1)
            {
                throw new CliUsageException("--requests, --stream-responses and --streams must be at least 1, --response-bytes at least 0");
            }

            RuntimeOptions? nats = r != "both" || kinds.Contains("nats") ? RuntimeConnection.FromEnvironment() : null;
            return RunAsync(r, kinds, parse.GetValue(label), n, m, b, s, parse.GetValue(json), nats, cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(string role, string[] kinds, string? label, int requests, int responses, int size, int streams, bool json, RuntimeOptions? nats, CancellationToken cancellationToken)
    {
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        TextWriter log = json ? Console.Error : Console.Out;
        if (role == "server")
        {
            await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(nats!, shutdown.Token);
            await using ServedEndpoint served = await RuntimeBenchmark.ServeAsync(runtime, shutdown.Token);
            Console.Error.WriteLine($"bench runtime: serving {RuntimeBenchmark.Address} as instance {EndpointAddress.FormatId(runtime.InstanceId)} until Ctrl-C");
            try
            {
                await Task.Delay(Timeout.Infinite, shutdown.Token);
            }
            catch (OperationCanceledException)
            {
            }

            return 0;
        }

        var results = new List<RuntimeBenchmark.Result>();
        foreach (string kind in kinds)
        {
            log.WriteLine($"bench runtime: {kind}...");
            if (kind == "inproc")
            {
                await using var cluster = new InProcessCluster();
                await using DistributedRuntime server = await cluster.ConnectAsync(shutdown.Token);
                await using DistributedRuntime client = await cluster.ConnectAsync(shutdown.Token);
                await using ServedEndpoint served = await RuntimeBenchmark.ServeAsync(server, shutdown.Token);
                results.Add(await MeasureAsync(client, "in-process", requests, responses, size, streams, shutdown.Token));
            }
            else if (role == "client")
            {
                await using DistributedRuntime client = await RuntimeConnection.ConnectAsync(nats!, shutdown.Token);
                results.Add(await MeasureAsync(client, label ?? "nats", requests, responses, size, streams, shutdown.Token));
            }
            else
            {
                // Two connections, as two processes would have.
                await using DistributedRuntime server = await RuntimeConnection.ConnectAsync(nats!, shutdown.Token);
                await using DistributedRuntime client = await RuntimeConnection.ConnectAsync(nats!, shutdown.Token);
                await using ServedEndpoint served = await RuntimeBenchmark.ServeAsync(server, shutdown.Token);
                results.Add(await MeasureAsync(client, label ?? "nats (loopback)", requests, responses, size, streams, shutdown.Token));
            }
        }

        if (json)
        {
            using Stream stdout = Console.OpenStandardOutput();
            RuntimeBenchmark.WriteJson(stdout, results);
        }
        else
        {
            RuntimeBenchmark.WriteTable(Console.Out, results);
        }

        return 0;
    }

    private static async Task<RuntimeBenchmark.Result> MeasureAsync(DistributedRuntime client, string transport, int requests, int responses, int size, int streams, CancellationToken cancellationToken) =>
        await RuntimeBenchmark.MeasureAsync(client, transport, requests, responses, size, streams, TimeSpan.FromSeconds(10), cancellationToken)
            ?? throw new CliUsageException($"no instance of {RuntimeBenchmark.Address} in discovery ({client.Discovery.Address}): start `dynamo bench runtime --role server` first");
}
