using System.CommandLine;
using Dynamo.Load;
using Dynamo.Load.Client;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;
using Dynamo.Load.Plot;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench serve</c>: load on an OpenAI-compatible server (ours or any other) through streaming
/// chat completions: output tok/s, requests/s, TTFT, ITL and end-to-end latency mean/p50/p90/p99,
/// rejections and errors; a live progress bar on a terminal; <c>--plot</c> draws latency against time.
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
        command.SetAction(parse => CliErrors.Run(() =>
        {
            LoadOptions options = load.Read(parse, parse.GetValue(url)!, parse.GetValue(model)!);
            IWorkload workload = load.Workload(parse);
            string? plotPath = parse.GetValue(plot);
            if (plotPath is not null && !plotPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            {
                throw new CliUsageException($"--plot: '{plotPath}' must end in .png");
            }

            bool progress = !parse.GetValue(noProgress) && !Console.IsErrorRedirected;
            return RunAsync(options, workload, parse.GetValue(json), plotPath, progress, !parse.GetValue(noWarmup)).GetAwaiter().GetResult();
        }));
        return command;
    }

    private static async Task<int> RunAsync(LoadOptions options, IWorkload workload, bool json, string? plotPath, bool showProgress, bool warmup)
    {
        IReadOnlyList<LoadConversation> conversations = workload.Build(options);
        int total = conversations.Sum(c => c.Turns.Count);
        Console.Error.WriteLine($"bench serve: {total} requests of workload {workload.Name} to {options.Url} (model {options.Model}), concurrency {options.Concurrency}");
        if (total < options.NumPrompts)
        {
            Console.Error.WriteLine($"bench serve: the trace has only {total} requests (--num-prompts {options.NumPrompts})");
        }

        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal();
        if (warmup)
        {
            // As vLLM's bench serve: one short request first, so that this process's JIT and the server's
            // first-request costs stay out of the figures, and a wrong URL or model shows at once. Its
            // prompt shares nothing with the workload's (no prefix-cache head start).
            using var client = new ChatStreamClient(options.Url, options.Model, TimeProvider.System, TimeProvider.System.GetTimestamp());
            RequestResult w = await client.SendAsync([new ChatMessage("user", "Warm-up request: say hello.")], 4, shutdown.Token);
            Console.Error.WriteLine(w.Outcome == RequestOutcome.Ok
                ? $"bench serve: warm-up request ok ({w.EndToEnd * 1000:F0} ms, not counted)"
                : $"bench serve: warm-up request failed (not counted): {w.Error}");
        }

        LoadProgress? progress = showProgress ? new LoadProgress(Console.Error, total, TimeProvider.System, TimeSpan.FromMilliseconds(250)) : null;
        List<RequestResult> results;
        double seconds;
        bool interrupted;
        try
        {
            var runner = new LoadRunner(options) { OnCompleted = progress is null ? null : progress.Completed };
            (results, seconds, interrupted) = await runner.RunAsync(conversations, shutdown.Token);
        }
        finally
        {
            if (progress is not null)
            {
                await progress.DisposeAsync();
            }
        }

        var report = LoadReport.From(options, workload.Name, results, seconds, interrupted);
        if (json)
        {
            using Stream stdout = Console.OpenStandardOutput();
            report.WriteJson(stdout);
        }
        else
        {
            report.WriteTable(Console.Out);
        }

        if (plotPath is not null)
        {
            PngEncoder.Write(plotPath, LatencyPlot.Render(results));
            Console.Error.WriteLine($"bench serve: plot written to {plotPath}");
        }

        return report.Completed == 0 ? 1 : 0;
    }
}
