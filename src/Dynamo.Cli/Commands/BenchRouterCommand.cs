using System.CommandLine;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary><c>dynamo bench router</c>: the KV router's speed, model-free (see <see cref="RouterBenchmark"/>).</summary>
internal static class BenchRouterCommand
{
    public static Command Create()
    {
        var workers = new Option<int>("--workers") { Description = "Workers in the index", DefaultValueFactory = _ => 64 };
        var blocks = new Option<int>("--blocks") { Description = "(worker, block) entries to index", DefaultValueFactory = _ => 1_000_000 };
        var decisions = new Option<int>("--decisions") { Description = "Routing decisions to time", DefaultValueFactory = _ => 100_000 };
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic workload", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("router", "KV router: decision latency p50/p99 and KV events applied per second") { workers, blocks, decisions, seed, json };

        // Synchronous: the bench is pure computation on this thread (its timings would only suffer from awaits).
        command.SetAction(parse =>
        {
            int w = parse.GetValue(workers), b = parse.GetValue(blocks), d = parse.GetValue(decisions);
            if (w < 1 || b < w || d < 1)
            {
                throw new CliUsageException("--workers and --decisions must be at least 1, --blocks at least --workers");
            }

            bool asJson = parse.GetValue(json);
            RouterBenchmark.Result result = RouterBenchmark.Run(w, b, d, parse.GetValue(seed), asJson ? Console.Error : Console.Out);
            BenchOutput.Write(asJson, result.WriteJson, result.WriteTable);

            return 0;
        });
        return command;
    }
}
