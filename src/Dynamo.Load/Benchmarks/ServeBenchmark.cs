using Dynamo.Load.Client;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench serve</c>: load on an OpenAI-compatible server (ours or any other) through streaming
/// chat completions: an optional warm-up request, then the workload with a live progress bar when asked;
/// the report (output tok/s, requests/s, TTFT, ITL and end-to-end latency mean/p50/p90/p99, rejections
/// and errors) and every request's measurements, for the plot.
/// </summary>
internal static class ServeBenchmark
{
    /// <summary>The run's report and its requests' measurements, in completion order.</summary>
    public sealed record Outcome(LoadReport Report, IReadOnlyList<RequestResult> Results);

    /// <summary>
    /// Sends <paramref name="workload"/> to <see cref="LoadOptions.Url"/>; status lines (and the progress bar,
    /// with <paramref name="progress"/>) go to <paramref name="log"/>. Cancelling stops sending: the report
    /// covers what completed and says it was interrupted.
    /// </summary>
    public static async Task<Outcome> RunAsync(LoadOptions options, IWorkload workload, bool warmup, bool progress, TextWriter log, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<LoadConversation> conversations = workload.Build(options);
        int total = conversations.Sum(c => c.Turns.Count);
        log.WriteLine($"bench serve: {total} requests of workload {workload.Name} to {options.Url} (model {options.Model}), concurrency {options.Concurrency}");
        if (total < options.NumPrompts)
        {
            log.WriteLine($"bench serve: the trace has only {total} requests (--num-prompts {options.NumPrompts})");
        }

        if (warmup)
        {
            // As vLLM's bench serve: one short request first, so that this process's JIT and the server's
            // first-request costs stay out of the figures, and a wrong URL or model shows at once. Its
            // prompt shares nothing with the workload's (no prefix-cache head start).
            using var client = new ChatStreamClient(options.Url, options.Model, TimeProvider.System, TimeProvider.System.GetTimestamp(), maxConnections: 1);
            RequestResult w = await client.SendAsync([new ChatMessage("user", "Warm-up request: say hello.")], 4, cancellationToken).ConfigureAwait(false);
            log.WriteLine(w.Outcome == RequestOutcome.Ok
                ? $"bench serve: warm-up request ok ({w.EndToEnd * 1000:F0} ms, not counted)"
                : $"bench serve: warm-up request failed (not counted): {w.Error}");
        }

        LoadProgress? bar = progress ? new LoadProgress(log, total, TimeProvider.System, TimeSpan.FromMilliseconds(250)) : null;
        List<RequestResult> results;
        double seconds;
        bool interrupted;
        try
        {
            var runner = new LoadRunner(options) { OnCompleted = bar is null ? null : bar.Completed };
            (results, seconds, interrupted) = await runner.RunAsync(conversations, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (bar is not null)
            {
                await bar.DisposeAsync().ConfigureAwait(false);
            }
        }

        return new Outcome(LoadReport.From(options, workload.Name, results, seconds, interrupted), results);
    }
}
