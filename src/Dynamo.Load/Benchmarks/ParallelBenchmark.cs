using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench parallel</c>: the forward pass at each tensor- and pipeline-parallel size (rank 0 in this process,
/// the other ranks as processes): prompt and generation tokens per second (one sequence, and a batch of several decoding
/// together), the share of the pass spent communicating or waiting, the resident memory of a rank; the all-reduce's
/// latency and bandwidth by message size over the same group; and what the same steps would take on other links by the
/// cost model of docs/parallelism.md (<see cref="ParallelCostModel"/>), with where the pipeline beats tensor parallelism.
/// </summary>
internal static class ParallelBenchmark
{
    /// <summary>One split's figures: "tp" or "pp" over <paramref name="Ranks"/> ranks (1: the whole model).</summary>
    public sealed record Row(
        string Split, int Ranks, int MicroBatches, double PromptTokensPerSecond, double GenTokensPerSecond, double BatchGenTokensPerSecond,
        double PromptCommunication, double GenCommunication, double BatchCommunication, long? RankResidentBytes, long RankWeightBytes)
    {
        public string Name => Ranks == 1 ? "1" : string.Create(CultureInfo.InvariantCulture, $"{Split} {Ranks}");
    }

    /// <summary>One all-reduce size: median and 99th-percentile latency, and bytes per second at the median.</summary>
    public sealed record AllReduceRow(int Ranks, long Bytes, double MedianMicroseconds, double P99Microseconds, double BytesPerSecond);

    /// <summary>
    /// Prompt of <paramref name="promptTokens"/> in one pass, then <paramref name="genTokens"/> single-token passes of one
    /// sequence, then <paramref name="genTokens"/> passes of <paramref name="batch"/> sequences (a token each); best of
    /// <paramref name="repetitions"/>.
    /// </summary>
    public static Row Measure(Transformer transformer, string split, int ranks, int promptTokens, int genTokens, int batch, int repetitions, Func<long?> rankResident, long rankWeightBytes)
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

        // A batch: each sequence a 16-token prompt, then decode steps of all of them together.
        var batched = new BatchedDecode(transformer, batch, genTokens, random);
        batched.Generate();
        double batchSeconds = Best(repetitions, batched.Generate, transformer, profile, out double batchComm);
        int microBatches = transformer.PipelineStage is null ? 1 : transformer.MicroBatches;
        return new Row(split, ranks, microBatches, promptTokens / promptSeconds, genTokens / genSeconds, batch * genTokens / batchSeconds, promptComm, genComm, batchComm, rankResident(), rankWeightBytes);
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

    /// <summary>The tables, and the cost model's projection for <see cref="ParallelCostModel.Links"/>.</summary>
    public static void Print(IReadOnlyList<Row> rows, IReadOnlyList<AllReduceRow> allReduce, ModelConfig model, int promptTokens, int genTokens, int batch, TextWriter output)
    {
        static string I(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        Row? one = rows.FirstOrDefault(r => r.Ranks == 1);
        output.WriteLine(I($"| ranks | pp{promptTokens} tok/s | tg{genTokens} tok/s | tg vs 1 rank | tg{genTokens} x {batch} seqs tok/s | batch vs 1 rank | communication (pp / tg / batch) | resident per rank | weights per rank |"));
        output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (Row r in rows)
        {
            string ratio = one is null ? "-" : I($"{r.GenTokensPerSecond / one.GenTokensPerSecond:F2}x");
            string batchRatio = one is null ? "-" : I($"{r.BatchGenTokensPerSecond / one.BatchGenTokensPerSecond:F2}x");
            string resident = r.RankResidentBytes is long b ? I($"{b / 1e6:F1} MB") : "(this process)";
            output.WriteLine(I($"| {r.Name} | {r.PromptTokensPerSecond:F1} | {r.GenTokensPerSecond:F1} | {ratio} | {r.BatchGenTokensPerSecond:F1} | {batchRatio} | {100 * r.PromptCommunication:F1} % / {100 * r.GenCommunication:F1} % / {100 * r.BatchCommunication:F1} % | {resident} | {r.RankWeightBytes / 1e6:F1} MB |"));
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
        output.WriteLine(I($"Cost model (docs/parallelism.md), from the 1-rank times measured above: tensor parallelism's step = compute(1) / N + (2 x {model.Layers} layers + 1) all-reduces of tokens x {model.Dim} floats + a gather of the logits; pipeline parallelism's = compute(1) x (N + M - 1) / (N M) with M micro-batches (M = 1 for one token) + (N - 1) transfers of a micro-batch's tokens x {model.Dim} floats + its logits ({model.VocabSize} floats a row) back to rank 0."));
        output.WriteLine(I($"| ranks | link | projected tg{genTokens} tok/s | tg vs 1 rank | projected tg x {batch} seqs tok/s | batch vs 1 rank | projected pp{promptTokens} tok/s |"));
        output.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        double tg1 = 1 / one.GenTokensPerSecond, batch1 = batch / one.BatchGenTokensPerSecond, pp1 = promptTokens / one.PromptTokensPerSecond;
        // Beside each measured pipeline, the same with more micro-batches (a projection only: not measured here).
        var splits = rows.Where(r => r.Ranks > 1).Select(r => (r.Split, r.Ranks, r.MicroBatches))
            .SelectMany(s => s.Split == "pp" && s.MicroBatches != ParallelCostModel.ProjectedMicroBatches ? [s, (s.Split, s.Ranks, ParallelCostModel.ProjectedMicroBatches)] : new[] { s })
            .Distinct().ToList();
        foreach ((string split, int n, int m) in splits)
        {
            foreach (ParallelCostModel.Link link in ParallelCostModel.Links)
            {
                double Step(double compute, int tokens, int logitRows) => split == "pp"
                    ? ParallelCostModel.PipelineStep(compute, n, m, model, tokens, logitRows, link)
                    : ParallelCostModel.TensorStep(compute, n, model, tokens, logitRows, link);
                double tg = Step(tg1, 1, 1), b = Step(batch1, batch, batch), pp = Step(pp1, promptTokens, 1);
                output.WriteLine(I($"| {split} {n}{(split == "pp" ? $" (M = {m})" : "")} | {link.Name} | {1 / tg:F1} | {tg1 / tg:F2}x | {batch / b:F1} | {batch1 / b:F2}x | {promptTokens / pp:F1} |"));
            }
        }

        foreach ((string _, int n, int m) in splits.Where(s => s.Split == "pp"))
        {
            output.WriteLine();
            foreach (ParallelCostModel.Link link in ParallelCostModel.Links)
            {
                string When(string what, double measured, int tokens, int logitRows)
                {
                    double below = ParallelCostModel.PipelineWinsBelow(n, m, model, tokens, logitRows, link);
                    string here = measured < below ? "pipeline" : "tensor";
                    return below <= 0
                        ? I($"{what}: never (it moves no less)")
                        : I($"{what}: when its 1-rank compute is under {below * 1e3:F3} ms (here {measured * 1e3:F3} ms: {here})");
                }

                output.WriteLine(I($"on link {link.Name}, pipeline beats tensor parallelism at {n} ranks (M = {m}) for a step of {When("one decode token", tg1, 1, 1)}; {When($"a batch of {batch} decode tokens", batch1, batch, batch)}; {When($"a {promptTokens}-token prefill", pp1, promptTokens, 1)}"));
            }
        }
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
