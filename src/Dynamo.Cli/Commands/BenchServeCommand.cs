using System.CommandLine;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Plot;
using Dynamo.Load.Workloads;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench serve</c>: load on an OpenAI-compatible server (see <see cref="ServeBenchmark"/>); the
/// report as a table or JSON on stdout, a live progress bar on a terminal, <c>--plot</c> for latency
/// against time. Ctrl-C stops sending and reports what completed.
/// </summary>
internal static class BenchServeCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url") { Description = "The server's base URL (requests go to URL/v1/chat/completions)", DefaultValueFactory = _ => LoadOptions.Default.Url };
        var model = new Option<string>("--model", "-m") { Description = "The model name of every request", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var plot = new Option<string?>("--plot") { Description = "Write a PNG of TTFT and end-to-end latency against request start time" };
        var noProgress = new Option<bool>("--no-progress") { Description = "No progress bar (it is off anyway when stderr is not a terminal)" };
        var noWarmup = new Option<bool>("--no-warmup") { Description = "Skip the untimed warm-up request sent before the run" };
        var command = new Command("serve", "Load on an OpenAI-compatible server: tok/s, requests/s, TTFT, ITL, latency percentiles, rejections")
        {
            url, model, json, plot, noProgress, noWarmup,
        };
        LoadFlags load = LoadFlags.AddTo(command, RandomWorkload.WorkloadName, LoadOptions.Default.Concurrency, LoadOptions.Default.NumPrompts, LoadOptions.Default.TraceBlockTokens);
        command.SetAction(async (parse, cancellationToken) =>
        {
            LoadOptions options = load.Read(parse, parse.GetValue(url)!, parse.GetValue(model)!);
            IWorkload workload = load.Workload(parse);
            string? plotPath = parse.GetValue(plot);
            if (plotPath is not null && !plotPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            {
                throw new CliUsageException($"--plot: '{plotPath}' must end in .png");
            }

            bool progress = !parse.GetValue(noProgress) && !Console.IsErrorRedirected;
            using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
            ServeBenchmark.Outcome outcome = await ServeBenchmark.RunAsync(options, workload, warmup: !parse.GetValue(noWarmup), progress, Console.Error, shutdown.Token);
            if (parse.GetValue(json))
            {
                using Stream stdout = Console.OpenStandardOutput();
                outcome.Report.WriteJson(stdout);
            }
            else
            {
                outcome.Report.WriteTable(Console.Out);
            }

            if (plotPath is not null)
            {
                LatencyPlot.Write(plotPath, outcome.Results);
                Console.Error.WriteLine($"bench serve: plot written to {plotPath}");
            }

            return outcome.Report.Completed == 0 ? 1 : 0;
        });
        return command;
    }
}
