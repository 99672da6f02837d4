using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench frontend</c>: the serving stack's own cost with the echo engine, layer by layer (see
/// <see cref="FrontendBenchmark"/>): engine direct, worker endpoint, HTTP frontend with SSE.
/// </summary>
internal static class BenchFrontendCommand
{
    public static Command Create()
    {
        var requests = new Option<int>("--requests") { Description = "Requests per layer", DefaultValueFactory = _ => 400 };
        var concurrency = new Option<int>("--concurrency") { Description = "Requests in flight", DefaultValueFactory = _ => 8 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens per answer (the echo engine returns the prompt's)", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("frontend", "The frontend's own cost with the echo engine: engine direct vs worker endpoint vs HTTP + SSE") { requests, concurrency, tokens, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            int n = parse.GetValue(requests), c = parse.GetValue(concurrency), t = parse.GetValue(tokens);
            if (n < 1 || c < 1 || t < 1)
            {
                throw new CliUsageException("--requests, --concurrency and --tokens must be at least 1");
            }

            bool asJson = parse.GetValue(json);
            var echo = new WorkerSettings { EngineKind = "echo", ServedModelName = "echo" };
            IReadOnlyList<FrontendBenchmark.Layer> layers = await FrontendBenchmark.RunAsync(BenchWorkers.Starting(echo), n, c, t, asJson ? Console.Error : Console.Out, cancellationToken);
            if (asJson)
            {
                using Stream stdout = Console.OpenStandardOutput();
                FrontendBenchmark.WriteJson(stdout, n, c, t, layers);
            }
            else
            {
                FrontendBenchmark.WriteTable(Console.Out, n, c, t, layers);
            }

            return 0;
        });
        return command;
    }
}
