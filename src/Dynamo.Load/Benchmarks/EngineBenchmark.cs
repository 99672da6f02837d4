using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench engine</c>: the serving engine under load, in-process (no HTTP): at each concurrency C,
/// C clients submit at once, each prompt of random tokens (no prefix shared), and every output token's
/// arrival is timed. Reports output tokens/s over the level's wall time, time to first token and
/// inter-token latency (mean, p50, p99). Then the prefix-cache section: groups of requests sharing a long
/// prefix, sent one at a time, cold (first of its group) against warm (the rest). A line per level goes to
/// the log, a line per failed request to the error writer.
/// </summary>
internal sealed class EngineBenchmark(InferenceEngine engine, int promptTokens, int outputTokens, int requestsPerClient, ulong seed, TextWriter log, TextWriter errors)
{
    private readonly Random _random = new((int)seed);
    private int _ids;

    public sealed record LevelResult(int Concurrency, int Requests, long OutputTokens, double Seconds, double OutputTokensPerSecond,
        Summary Ttft, Summary Itl, int Failed);

    public sealed record PrefixResult(int PrefixTokens, int SuffixTokens, int Groups, int PerGroup, double HitRate, Summary ColdTtft, Summary WarmTtft, double TtftGain);

    /// <summary>Groups and requests per group of the prefix-cache section, and the tokens of each request's own.</summary>
    private const int PrefixGroups = 3, PrefixPerGroup = 4, PrefixSuffixTokens = 16;

    public sealed record Summary(double Mean, double P50, double P99)
    {
        public static Summary Of(List<double> values)
        {
            if (values.Count == 0)
            {
                return new Summary(0, 0, 0);
            }

            values.Sort();
            return new Summary(values.Average(), Percentile(values, 0.50), Percentile(values, 0.99));
        }

        private static double Percentile(List<double> sorted, double q) => sorted[(int)Math.Min(sorted.Count - 1, Math.Ceiling(q * sorted.Count) - 1)];
    }

    private int[] RandomTokens(int count)
    {
        int vocab = engine.ModelConfig.VocabSize;
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = _random.Next(Math.Min(3, vocab - 1), vocab);
        }

        return tokens;
    }

    private SamplingParams Params => SamplingParams.Greedy with { MaxTokens = outputTokens, IgnoreEos = true };

    /// <summary>
    /// The whole bench: one short warm-up request (JIT, page faults), each concurrency level in turn (a line
    /// per level on the log), then the prefix-cache section with <paramref name="sharedPrefixTokens"/> shared
    /// tokens, capped to fit a sequence (0, or no room, skips it).
    /// </summary>
    public async Task<(List<LevelResult> Levels, PrefixResult? Prefix)> RunAsync(IReadOnlyList<int> levels, int sharedPrefixTokens, CancellationToken cancellationToken = default)
    {
        await RunLevelAsync(1, cancellationToken).ConfigureAwait(false);
        var results = new List<LevelResult>();
        foreach (int level in levels)
        {
            LevelResult r = await RunLevelAsync(level, cancellationToken).ConfigureAwait(false);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"concurrency {level}: {r.OutputTokensPerSecond:F1} output tok/s, TTFT p50 {r.Ttft.P50 * 1000:F0} ms"));
            results.Add(r);
        }

        int shared = Math.Min(sharedPrefixTokens, engine.MaxSequenceLength - outputTokens - PrefixSuffixTokens - 1);
        PrefixResult? prefix = sharedPrefixTokens > 0 && shared > 0
            ? await RunPrefixAsync(shared, PrefixSuffixTokens, PrefixGroups, PrefixPerGroup, cancellationToken).ConfigureAwait(false)
            : null;
        return (results, prefix);
    }

    /// <summary>Runs one request; returns its TTFT and inter-token gaps in seconds, and its output token count.</summary>
    private async Task<(double Ttft, List<double> Gaps, int Tokens, bool Ok)> OneAsync(int[] prompt, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        double last = 0, ttft = 0;
        var gaps = new List<double>(outputTokens);
        int tokens = 0;
        try
        {
            await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest($"bench-{Interlocked.Increment(ref _ids)}", prompt, Params), cancellationToken).ConfigureAwait(false))
            {
                double now = clock.Elapsed.TotalSeconds;
                if (tokens == 0)
                {
                    ttft = now;
                }
                else
                {
                    gaps.Add(now - last);
                }

                last = now;
                tokens += o.TokenIds.Count;
            }

            return (ttft, gaps, tokens, tokens == outputTokens);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            errors.WriteLine($"request failed: {e.Message}");
            return (0, gaps, tokens, false);
        }
    }

    private async Task<LevelResult> RunLevelAsync(int concurrency, CancellationToken cancellationToken = default)
    {
        int[][][] prompts = [.. Enumerable.Range(0, concurrency).Select(_ => Enumerable.Range(0, requestsPerClient).Select(_ => RandomTokens(promptTokens)).ToArray())];
        var ttfts = new List<double>();
        var itls = new List<double>();
        long output = 0;
        int failed = 0;
        var clock = Stopwatch.StartNew();
        var clients = prompts.Select(async mine =>
        {
            var results = new List<(double, List<double>, int, bool)>();
            foreach (int[] p in mine)
            {
                results.Add(await OneAsync(p, cancellationToken).ConfigureAwait(false));
            }

            return results;
        }).ToList();
        foreach (var r in (await Task.WhenAll(clients).ConfigureAwait(false)).SelectMany(x => x))
        {
            ttfts.Add(r.Item1);
            itls.AddRange(r.Item2);
            output += r.Item3;
            failed += r.Item4 ? 0 : 1;
        }

        double seconds = clock.Elapsed.TotalSeconds;
        return new LevelResult(concurrency, concurrency * requestsPerClient, output, seconds, output / seconds, Summary.Of(ttfts), Summary.Of(itls), failed);
    }

    private async Task<PrefixResult> RunPrefixAsync(int prefixTokens, int suffixTokens, int groups, int perGroup, CancellationToken cancellationToken = default)
    {
        var cold = new List<double>();
        var warm = new List<double>();
        EngineStats before = engine.Stats;
        for (int g = 0; g < groups; g++)
        {
            int[] prefix = RandomTokens(prefixTokens);
            for (int i = 0; i < perGroup; i++)
            {
                var r = await OneAsync([.. prefix, .. RandomTokens(suffixTokens)], cancellationToken).ConfigureAwait(false);
                (i == 0 ? cold : warm).Add(r.Ttft);
            }
        }

        EngineStats after = engine.Stats;
        long queries = after.PrefixQueryTokens - before.PrefixQueryTokens, hits = after.PrefixHitTokens - before.PrefixHitTokens;
        Summary c = Summary.Of(cold), w = Summary.Of(warm);
        return new PrefixResult(prefixTokens, suffixTokens, groups, perGroup, queries == 0 ? 0 : (double)hits / queries, c, w, w.Mean > 0 ? c.Mean / w.Mean : 0);
    }

    public static void PrintTable(TextWriter output, IReadOnlyList<LevelResult> levels, PrefixResult? prefix)
    {
        static string Ms(double seconds) => seconds >= 10 ? string.Create(CultureInfo.InvariantCulture, $"{seconds:F1} s") : string.Create(CultureInfo.InvariantCulture, $"{seconds * 1000:F1} ms");
        output.WriteLine("| concurrency | requests | output tok/s | TTFT mean | TTFT p50 | TTFT p99 | ITL mean | ITL p50 | ITL p99 | failed |");
        output.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (LevelResult l in levels)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {l.Concurrency} | {l.Requests} | {l.OutputTokensPerSecond:F1} | {Ms(l.Ttft.Mean)} | {Ms(l.Ttft.P50)} | {Ms(l.Ttft.P99)} | {Ms(l.Itl.Mean)} | {Ms(l.Itl.P50)} | {Ms(l.Itl.P99)} | {l.Failed} |"));
        }

        if (prefix is not null)
        {
            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"shared prefix: {prefix.Groups} groups x {prefix.PerGroup} requests, {prefix.PrefixTokens} shared + {prefix.SuffixTokens} own prompt tokens, one at a time"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"prefix-cache hit rate {prefix.HitRate:P1}; TTFT cold {Ms(prefix.ColdTtft.Mean)}, warm {Ms(prefix.WarmTtft.Mean)} (mean): {prefix.TtftGain:F1}x faster"));
        }
    }

    public static void WriteJson(Stream stream, string model, int threads, int promptTokens, int outputTokens, IReadOnlyList<LevelResult> levels, PrefixResult? prefix)
    {
        static void Summary(Utf8JsonWriter w, string name, Summary s)
        {
            w.WriteStartObject(name);
            w.WriteNumber("mean_ms", Math.Round(s.Mean * 1000, 3));
            w.WriteNumber("p50_ms", Math.Round(s.P50 * 1000, 3));
            w.WriteNumber("p99_ms", Math.Round(s.P99 * 1000, 3));
            w.WriteEndObject();
        }

        JsonReport.Write(stream, indented: false, w =>
        {
            w.WriteString("benchmark", "engine");
            w.WriteString("model", model);
            w.WriteNumber("threads", threads);
            w.WriteNumber("prompt_tokens", promptTokens);
            w.WriteNumber("output_tokens", outputTokens);
            w.WriteStartArray("levels");
            foreach (LevelResult l in levels)
            {
                w.WriteStartObject();
                w.WriteNumber("concurrency", l.Concurrency);
                w.WriteNumber("requests", l.Requests);
                w.WriteNumber("failed", l.Failed);
                w.WriteNumber("output_tokens", l.OutputTokens);
                w.WriteNumber("seconds", Math.Round(l.Seconds, 3));
                w.WriteNumber("output_tokens_per_second", Math.Round(l.OutputTokensPerSecond, 2));
                Summary(w, "ttft", l.Ttft);
                Summary(w, "itl", l.Itl);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (prefix is not null)
            {
                w.WriteStartObject("shared_prefix");
                w.WriteNumber("prefix_tokens", prefix.PrefixTokens);
                w.WriteNumber("suffix_tokens", prefix.SuffixTokens);
                w.WriteNumber("groups", prefix.Groups);
                w.WriteNumber("per_group", prefix.PerGroup);
                w.WriteNumber("hit_rate", Math.Round(prefix.HitRate, 4));
                Summary(w, "cold_ttft", prefix.ColdTtft);
                Summary(w, "warm_ttft", prefix.WarmTtft);
                w.WriteNumber("ttft_gain", Math.Round(prefix.TtftGain, 2));
                w.WriteEndObject();
            }
        });
    }
}
