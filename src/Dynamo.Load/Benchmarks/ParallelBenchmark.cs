using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench parallel</c>: the forward pass at each tensor-parallel size (rank 0 in this process, the other
/// ranks as processes): prompt and generation tokens per second, the share of the pass spent in collectives, the
/// resident memory of a rank; the all-reduce's latency and bandwidth by message size over the same group; and what the
/// same passes would take on faster links by the cost model of docs/parallelism.md.
/// </summary>
internal static class ParallelBenchmark
{
    /// <summary>One tensor-parallel size's figures.</summary>
    public sealed record Row(int Ranks, double PromptTokensPerSecond, double GenTokensPerSecond, double PromptCommunication, double GenCommunication, long? RankResidentBytes, long RankWeightBytes);

    /// <summary>One all-reduce size: median and 99th-percentile latency, and bytes per second at the median.</summary>
    public sealed record AllReduceRow(int Ranks, long Bytes, double MedianMicroseconds, double P99Microseconds, double BytesPerSecond);

    /// <summary>Prompt of <paramref name="promptTokens"/> in one pass, then <paramref name="genTokens"/> single-token passes; best of <paramref name="repetitions"/>.</summary>
    public static Row Measure(Transformer transformer, int ranks, int promptTokens, int genTokens, int repetitions, Func<long?> rankResident, long rankWeightBytes)
    {
        ModelConfig c = transformer.Config;
        var random = new Random(1234);
        int[] prompt = [.. Enumerable.Range(0, promptTokens).Select(_ => random.Next(c.VocabSize))];
        var cache = new SequenceKvCache(c, promptTokens + genTokens + 1);
        var logits = new float[c.VocabSize];
        var profile = new ForwardProfile();

        transformer.Forward(prompt, 0, cache, logits);
        double promptSeconds = Best(repetitions, () => transformer.Forward(prompt, 0, cache, logits), transformer, profile, out double promptComm);

        void Generate()
        {
            int token = 1;
            for (int i = 0; i < genTokens; i++)
            {
                transformer.Forward([token], promptTokens + i, cache, logits);
                token = TensorPrimitives.IndexOfMax<float>(logits);
            }
        }

        Generate();
        double genSeconds = Best(repetitions, Generate, transformer, profile, out double genComm);
        return new Row(ranks, promptTokens / promptSeconds, genTokens / genSeconds, promptComm, genComm, rankResident(), rankWeightBytes);
    }

    /// <summary>All-reduces of each size over rank 0's group (every rank takes part).</summary>
    public static IEnumerable<AllReduceRow> AllReduce(Transformer transformer, int ranks, IEnumerable<int> floatCounts)
    {
        foreach (int floats in floatCounts)
        {
            long bytes = 4L * floats;
            int iterations = (int)Math.Clamp((64L << 20) / Math.Max(bytes, 1), 8, 400);
            double[] us = [.. transformer.ProbeAllReduce(floats, iterations).Select(t => t.TotalMicroseconds).Order()];
            double median = LatencySummary.Percentile(us, 50), p99 = LatencySummary.Percentile(us, 99);
            yield return new AllReduceRow(ranks, bytes, median, p99, bytes / (median / 1e6));
        }
    }

    /// <summary>The tables, and the cost model's projection for the given link bandwidths (bytes per second) and latency.</summary>
    public static void Print(IReadOnlyList<Row> rows, IReadOnlyList<AllReduceRow> allReduce, ModelConfig model, int promptTokens, int genTokens, TextWriter output)
    {
        string I(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        Row? one = rows.FirstOrDefault(r => r.Ranks == 1);
        output.WriteLine(I($"| ranks | pp{promptTokens} tok/s | tg{genTokens} tok/s | tg vs 1 rank | communication (pp / tg) | resident per rank | weights per rank |"));
        output.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (Row r in rows)
        {
            string ratio = one is null ? "-" : I($"{r.GenTokensPerSecond / one.GenTokensPerSecond:F2}x");
            string resident = r.RankResidentBytes is long b ? I($"{b / 1e6:F1} MB") : "(this process)";
            output.WriteLine(I($"| {r.Ranks} | {r.PromptTokensPerSecond:F1} | {r.GenTokensPerSecond:F1} | {ratio} | {100 * r.PromptCommunication:F1} % / {100 * r.GenCommunication:F1} % | {resident} | {r.RankWeightBytes / 1e6:F1} MB |"));
        }

        if (allReduce.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("| ranks | all-reduce bytes | median us | p99 us | bytes/s at the median |");
            output.WriteLine("| ---: | ---: | ---: | ---: | ---: |");
            foreach (AllReduceRow a in allReduce)
            {
                output.WriteLine(I($"| {a.Ranks} | {a.Bytes:N0} | {a.MedianMicroseconds:F1} | {a.P99Microseconds:F1} | {a.BytesPerSecond / 1e9:F3} GB/s |"));
            }
        }

        if (one is null)
        {
            return;
        }

        output.WriteLine();
        output.WriteLine(I($"Cost model (docs/parallelism.md): a token's step at N ranks = (its 1-rank compute) / N + (2 x {model.Layers} layers + 1) all-reduces of {model.Dim} floats + a gather of the logits; an all-reduce of a few KB = latency + (N-1) x bytes / bandwidth (each rank sends its part to every other and sums)."));
        output.WriteLine("| ranks | link | projected tg tok/s | vs 1 rank |");
        output.WriteLine("| ---: | --- | ---: | ---: |");
        double compute = 1 / one.GenTokensPerSecond;
        foreach (int n in rows.Select(r => r.Ranks).Where(n => n > 1))
        {
            foreach ((string name, double bandwidth, double latency) in new[] { ("25 GB/s, 5 us", 25e9, 5e-6), ("100 GB/s, 2 us", 100e9, 2e-6) })
            {
                double step = StepSeconds(compute, n, model, bandwidth, latency);
                output.WriteLine(I($"| {n} | {name} | {1 / step:F1} | {compute / step:F2}x |"));
            }
        }
    }

    /// <summary>The cost model: one decode step of one sequence at <paramref name="ranks"/> ranks on a link.</summary>
    public static double StepSeconds(double oneRankSeconds, int ranks, ModelConfig model, double bandwidth, double latency)
    {
        // Small messages: one exchange, every rank sending its part to every other (src/Dynamo.Components/Parallel/README.md).
        double AllReduce(double bytes) => latency + (ranks - 1) * bytes / bandwidth;
        double collectives = (2 * model.Layers + 1) * AllReduce(4.0 * model.Dim);
        double gather = latency + (ranks - 1) * 4.0 * model.VocabSize / ranks / bandwidth;
        return oneRankSeconds / ranks + collectives + gather;
    }

    private static double Best(int repetitions, Action action, Transformer transformer, ForwardProfile profile, out double communication)
    {
        double best = double.MaxValue;
        communication = 0;
        for (int i = 0; i < repetitions; i++)
        {
            profile.Reset();
            transformer.Profile = profile;
            var clock = Stopwatch.StartNew();
            action();
            double seconds = clock.Elapsed.TotalSeconds;
            transformer.Profile = null;
            if (seconds < best)
            {
                best = seconds;
                IReadOnlyList<TimeSpan> times = profile.Times;
                double total = times.Sum(t => t.TotalSeconds);
                communication = total > 0 ? times[ForwardProfile.Phases.ToList().IndexOf("communication")].TotalSeconds / total : 0;
            }
        }

        return best;
    }
}
