using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench forward</c>: prompt processing (ppN: N tokens in one forward) and text generation
/// (tgN: N single-token forwards) in tokens per second, mean and standard deviation over repetitions,
/// after one untimed warm-up: the two figures llama-bench reports, so they compare directly with
/// ../shared/anchors.md. With a batch, also batched decode (tgN x B: B sequences a pass, llama-batched-bench
/// style). With a profile, also where each test's time goes, by phase of the forward pass.
/// </summary>
internal static class ForwardBenchmark
{
    /// <summary>Median tokens per second of each test run (null: not run).</summary>
    public sealed record Result(double? PromptTokensPerSecond, double? GenTokensPerSecond, double? BatchGenTokensPerSecond);

    /// <summary>
    /// Runs ppN (when <paramref name="promptTokens"/> &gt; 0), then tgN (when <paramref name="genTokens"/> &gt; 0), then tgN
    /// with <paramref name="batch"/> sequences a pass (when above 0 and tgN runs), one line each on <paramref name="output"/>;
    /// keys and values stored as <paramref name="kvDtype"/>.
    /// </summary>
    public static Result Run(Transformer transformer, int promptTokens, int genTokens, int repetitions, bool profile, TextWriter output, int batch = 0, KvCacheDtype kvDtype = KvCacheDtype.F16, int batchPrompt = BatchedDecode.DefaultPromptEach)
    {
        double? pp = null, tg = null, batched = null;
        ModelConfig c = transformer.Config;
        var random = new Random(1234);
        int[] prompt = Enumerable.Range(0, Math.Max(promptTokens, 1)).Select(_ => random.Next(c.VocabSize)).ToArray();
        var cache = new SequenceKvCache(c, Math.Max(promptTokens, genTokens + 1), kvDtype);
        var logits = new float[c.VocabSize];
        ForwardProfile? phases = profile ? new ForwardProfile() : null;
        if (promptTokens > 0)
        {
            transformer.Forward(prompt, 0, cache, logits);
            transformer.Profile = phases;
            pp = Report(output, $"pp{promptTokens}", promptTokens, Time(repetitions, () => transformer.Forward(prompt, 0, cache, logits)));
            PrintProfile(output, phases, repetitions);
            transformer.Profile = null;
        }

        if (genTokens > 0)
        {
            void Generate()
            {
                int token = 1;
                for (int i = 0; i < genTokens; i++)
                {
                    transformer.Forward([token], i, cache, logits);
                    token = TensorPrimitives.IndexOfMax<float>(logits);
                }
            }

            Generate();
            phases?.Reset();
            transformer.Profile = phases;
            tg = Report(output, $"tg{genTokens}", genTokens, Time(repetitions, Generate));
            PrintProfile(output, phases, repetitions);
            transformer.Profile = null;
        }

        if (genTokens > 0 && batch > 0)
        {
            var decode = new BatchedDecode(transformer, batch, genTokens, random, kvDtype, batchPrompt);
            decode.Generate();
            phases?.Reset();
            transformer.Profile = phases;
            batched = Report(output, $"tg{genTokens} x {batch} seqs", decode.TokensPerRun, Time(repetitions, decode.Generate));
            PrintProfile(output, phases, repetitions);
            transformer.Profile = null;
        }

        return new Result(pp, tg, batched);
    }

    private static void PrintProfile(TextWriter output, ForwardProfile? profile, int repetitions)
    {
        if (profile is null)
        {
            return;
        }

        IReadOnlyList<TimeSpan> times = profile.Times;
        double total = times.Sum(t => t.TotalMilliseconds);
        for (int i = 0; i < times.Count; i++)
        {
            double ms = times[i].TotalMilliseconds / repetitions;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {ForwardProfile.Phases[i],-20} {ms,9:F2} ms  {100 * times[i].TotalMilliseconds / Math.Max(total, 1e-9),5:F1} %"));
        }
    }

    private static double[] Time(int repetitions, Action action)
    {
        var seconds = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            seconds[i] = clock.Elapsed.TotalSeconds;
        }

        return seconds;
    }

    private static double Report(TextWriter output, string test, int tokens, double[] seconds)
    {
        double[] rates = seconds.Select(s => tokens / s).ToArray();
        double mean = rates.Average();
        double sd = rates.Length > 1 ? Math.Sqrt(rates.Sum(r => (r - mean) * (r - mean)) / (rates.Length - 1)) : 0;
        double median = rates.Order().ElementAt(rates.Length / 2);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{test}: {mean:F1} ± {sd:F1} tok/s (median {median:F1}, {rates.Length} runs)"));
        return median;
    }
}
