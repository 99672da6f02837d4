using System.Globalization;
using System.Text.Json;
using Dynamo.Load.Client;

namespace Dynamo.Load.Reports;

/// <summary>
/// The figures of a run, computed from its <see cref="RequestResult"/>s: throughput over the whole run's
/// wall time, latencies over the successful requests (ITL pools every gap between content chunks of
/// every successful request), counts of rejections (HTTP 429/503) and errors with the first messages.
/// </summary>
internal sealed record LoadReport
{
    /// <summary>How many distinct error messages the report keeps.</summary>
    public const int MaxErrorMessages = 5;

    public required LoadOptions Options { get; init; }

    public required string Workload { get; init; }

    public int Requests { get; init; }

    public int Completed { get; init; }

    public int Rejected { get; init; }

    public int Errors { get; init; }

    public IReadOnlyList<string> ErrorMessages { get; init; } = [];

    /// <summary>Requests sent a second time because their connection closed before any byte of the response.</summary>
    public int Retries { get; init; }

    /// <summary>The first distinct reasons of <see cref="Retries"/>.</summary>
    public IReadOnlyList<string> RetryMessages { get; init; } = [];

    public bool Interrupted { get; init; }

    public double DurationSeconds { get; init; }

    public long InputTokens { get; init; }

    public long OutputTokens { get; init; }

    public double RequestsPerSecond => DurationSeconds > 0 ? Completed / DurationSeconds : 0;

    public double OutputTokensPerSecond => DurationSeconds > 0 ? OutputTokens / DurationSeconds : 0;

    public double TotalTokensPerSecond => DurationSeconds > 0 ? (InputTokens + OutputTokens) / DurationSeconds : 0;

    public LatencySummary Ttft { get; init; }

    public LatencySummary Itl { get; init; }

    public LatencySummary EndToEnd { get; init; }

    public static LoadReport From(LoadOptions options, string workload, IReadOnlyList<RequestResult> results, double durationSeconds, bool interrupted = false)
    {
        RequestResult[] ok = [.. results.Where(r => r.Outcome == RequestOutcome.Ok)];
        return new LoadReport
        {
            Options = options,
            Workload = workload,
            Requests = results.Count,
            Completed = ok.Length,
            Rejected = results.Count(r => r.Outcome == RequestOutcome.Rejected),
            Errors = results.Count(r => r.Outcome == RequestOutcome.Error),
            ErrorMessages = [.. results.Where(r => r.Outcome != RequestOutcome.Ok && r.Error is not null).Select(r => r.Error!).Distinct().Take(MaxErrorMessages)],
            Retries = results.Sum(r => r.Retries),
            RetryMessages = [.. results.Where(r => r.RetryError is not null).Select(r => r.RetryError!).Distinct().Take(MaxErrorMessages)],
            Interrupted = interrupted,
            DurationSeconds = durationSeconds,
            InputTokens = ok.Sum(r => (long)(r.PromptTokens ?? 0)),
            OutputTokens = ok.Sum(r => (long)r.OutputTokens),
            Ttft = LatencySummary.Of(ok.Where(r => r.Ttft is not null).Select(r => r.Ttft!.Value)),
            Itl = LatencySummary.Of(ok.SelectMany(r => r.TokenGaps)),
            EndToEnd = LatencySummary.Of(ok.Select(r => r.EndToEnd)),
        };
    }

    /// <summary>The human report: a summary, a latency table (ms), then the first error messages.</summary>
    public void WriteTable(TextWriter output)
    {
        LoadOptions o = Options;
        output.WriteLine(Invariant($"bench serve: {o.Url} model {o.Model}, workload {Workload}, concurrency {o.Concurrency}, {Requests} requests{(Interrupted ? " (interrupted)" : "")}"));
        output.WriteLine(Invariant($"completed {Completed}, rejected {Rejected} (HTTP 429/503), errors {Errors}, duration {DurationSeconds:F2} s"));
        if (Retries > 0)
        {
            output.WriteLine(Invariant($"resent {Retries} (their connection closed before any byte of the response; sent again on a new connection, timed from the first send)"));
        }
        output.WriteLine(Invariant($"requests/s {RequestsPerSecond:F2}, output tok/s {OutputTokensPerSecond:F1}, total tok/s {TotalTokensPerSecond:F1} (input {InputTokens} + output {OutputTokens} tokens, from usage)"));
        output.WriteLine();
        output.WriteLine("| latency (ms) | mean | p50 | p90 | p99 | n |");
        output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        Row(output, "TTFT", Ttft);
        Row(output, "ITL", Itl);
        Row(output, "end-to-end", EndToEnd);
        if (ErrorMessages.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("first errors:");
            foreach (string m in ErrorMessages)
            {
                output.WriteLine("  " + m);
            }
        }

        if (RetryMessages.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("first reasons to resend:");
            foreach (string m in RetryMessages)
            {
                output.WriteLine("  " + m);
            }
        }
    }

    private static void Row(TextWriter output, string name, LatencySummary s) =>
        output.WriteLine(Invariant($"| {name} | {s.Mean * 1000:F1} | {s.P50 * 1000:F1} | {s.P90 * 1000:F1} | {s.P99 * 1000:F1} | {s.Count} |"));

    /// <summary>One JSON object (snake_case): config, counts, throughput, latencies in ms, errors.</summary>
    public void WriteJson(Stream output)
    {
        LoadOptions o = Options;
        JsonReport.Write(output, indented: true, w =>
        {
            w.WriteStartObject("config");
            w.WriteString("url", o.Url);
            w.WriteString("model", o.Model);
            w.WriteString("workload", Workload);
            w.WriteNumber("concurrency", o.Concurrency);
            w.WriteNumber("num_prompts", o.NumPrompts);
            WriteNullable(w, "input_len", o.InputLen);
            WriteNullable(w, "output_len", o.OutputLen);
            w.WriteNumber("trace_scale", o.TraceScale);
            w.WriteNumber("trace_block_tokens", o.TraceBlockTokens);
            w.WriteNumber("seed", o.Seed);
            w.WriteEndObject();
            w.WriteNumber("requests", Requests);
            w.WriteNumber("completed", Completed);
            w.WriteNumber("rejected", Rejected);
            w.WriteNumber("errors", Errors);
            w.WriteNumber("retries", Retries);
            w.WriteBoolean("interrupted", Interrupted);
            w.WriteNumber("duration_s", Math.Round(DurationSeconds, 4));
            w.WriteNumber("requests_per_second", Math.Round(RequestsPerSecond, 3));
            w.WriteNumber("input_tokens", InputTokens);
            w.WriteNumber("output_tokens", OutputTokens);
            w.WriteNumber("output_tokens_per_second", Math.Round(OutputTokensPerSecond, 2));
            w.WriteNumber("total_tokens_per_second", Math.Round(TotalTokensPerSecond, 2));
            WriteSummary(w, "ttft_ms", Ttft);
            WriteSummary(w, "itl_ms", Itl);
            WriteSummary(w, "e2e_ms", EndToEnd);
            w.WriteStartArray("error_messages");
            foreach (string m in ErrorMessages)
            {
                w.WriteStringValue(m);
            }

            w.WriteEndArray();

            w.WriteStartArray("retry_messages");
            foreach (string m in RetryMessages)
            {
                w.WriteStringValue(m);
            }

            w.WriteEndArray();
        });
    }

    /// <summary>A latency summary as a JSON object: count, then mean, p50, p90 and p99 in milliseconds.</summary>
    internal static void WriteSummary(Utf8JsonWriter w, string name, LatencySummary s)
    {
        w.WriteStartObject(name);
        w.WriteNumber("count", s.Count);
        w.WriteNumber("mean", Math.Round(s.Mean * 1000, 3));
        w.WriteNumber("p50", Math.Round(s.P50 * 1000, 3));
        w.WriteNumber("p90", Math.Round(s.P90 * 1000, 3));
        w.WriteNumber("p99", Math.Round(s.P99 * 1000, 3));
        w.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter w, string name, int? value)
    {
        if (value is int v)
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
