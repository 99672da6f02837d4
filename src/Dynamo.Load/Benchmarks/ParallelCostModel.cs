using Dynamo.Engine.Models;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The cost model of docs/parallelism.md: one forward step at N ranks on a link of bandwidth B and one-way latency a,
/// from the one-rank compute time of the same step (measured). Tensor parallelism divides the compute by N and pays
/// 2L + 1 all-reduces of tokens x dim floats and a gather of the logits; pipeline parallelism runs the stages in turn
/// (compute(1) for one sequence), overlapped over M micro-batches ((N + M - 1) / (N M) of compute(1)), and pays N - 1
/// activation transfers of a micro-batch (tokens / M x dim floats) on the critical path, plus the last micro-batch's
/// logits back to rank 0.
/// </summary>
internal static class ParallelCostModel
{
    /// <summary>A link: its name in the tables, bytes per second, one-way latency in seconds.</summary>
    public sealed record Link(string Name, double Bandwidth, double Latency);

    /// <summary>The links the bench projects onto: two datacenter-class ones, and two slow ones (10 GbE-class, 1 GbE-class), where the pipeline can win.</summary>
    public static IReadOnlyList<Link> Links { get; } =
    [
        new("25 GB/s, 5 us", 25e9, 5e-6),
        new("100 GB/s, 2 us", 100e9, 2e-6),
        new("1 GB/s, 50 us", 1e9, 50e-6),
        new("0.1 GB/s, 100 us", 0.1e9, 100e-6),
    ];

    /// <summary>The micro-batches the projection adds beside the measured count: enough to hide most of the pipeline's fill.</summary>
    public const int ProjectedMicroBatches = 8;

    /// <summary>An all-reduce as ours runs it: up to 64 KB one exchange (each rank sends its part to every other), larger a reduce-scatter then an all-gather.</summary>
    public static double AllReduce(double bytes, int ranks, Link link) => bytes <= 64 * 1024
        ? link.Latency + ((ranks - 1) * bytes / link.Bandwidth)
        : (2 * link.Latency) + (2.0 * (ranks - 1) / ranks * bytes / link.Bandwidth);

    /// <summary>Tensor parallelism's communication in a step of <paramref name="tokens"/> tokens, <paramref name="rows"/> of which sample.</summary>
    public static double TensorCommunication(int ranks, ModelConfig model, int tokens, int rows, Link link) =>
        ((2 * model.Layers) + 1) * AllReduce(4.0 * tokens * model.Dim, ranks, link)
        + link.Latency + ((ranks - 1) * 4.0 * rows * model.VocabSize / ranks / link.Bandwidth);

    /// <summary>A tensor-parallel step: compute(1) / N plus its communication.</summary>
    public static double TensorStep(double oneRankSeconds, int ranks, ModelConfig model, int tokens, int rows, Link link) =>
        (oneRankSeconds / ranks) + TensorCommunication(ranks, model, tokens, rows, link);

    /// <summary>Micro-batches that have tokens: at most one per token.</summary>
    public static int EffectiveMicroBatches(int microBatches, int tokens) => Math.Max(1, Math.Min(microBatches, tokens));

    /// <summary>Pipeline parallelism's communication on the critical path of a step.</summary>
    public static double PipelineCommunication(int ranks, int microBatches, ModelConfig model, int tokens, int rows, Link link)
    {
        int m = EffectiveMicroBatches(microBatches, tokens);
        double activations = link.Latency + (4.0 * Math.Ceiling((double)tokens / m) * model.Dim / link.Bandwidth);
        double logits = link.Latency + (4.0 * Math.Ceiling((double)rows / m) * model.VocabSize / link.Bandwidth);
        return ((ranks - 1) * activations) + logits;
    }

    /// <summary>The compute of a pipelined step: (N + M - 1) stage-slots of compute(1) / (N M) each.</summary>
    public static double PipelineCompute(double oneRankSeconds, int ranks, int microBatches, int tokens)
    {
        int m = EffectiveMicroBatches(microBatches, tokens);
        return oneRankSeconds * (ranks + m - 1) / (ranks * m);
    }

    public static double PipelineStep(double oneRankSeconds, int ranks, int microBatches, ModelConfig model, int tokens, int rows, Link link) =>
        PipelineCompute(oneRankSeconds, ranks, microBatches, tokens) + PipelineCommunication(ranks, microBatches, model, tokens, rows, link);

    /// <summary>
    /// The one-rank compute of a step below which the pipeline's step is shorter than tensor parallelism's on the link:
    /// the pipeline computes (N - 1) / (N M) of compute(1) more and communicates less, so it wins while
    /// compute(1) &lt; N M / (N - 1) x (TP's communication - PP's). Zero: never (the pipeline communicates no less).
    /// </summary>
    public static double PipelineWinsBelow(int ranks, int microBatches, ModelConfig model, int tokens, int rows, Link link)
    {
        int m = EffectiveMicroBatches(microBatches, tokens);
        double saved = TensorCommunication(ranks, model, tokens, rows, link) - PipelineCommunication(ranks, microBatches, model, tokens, rows, link);
        return saved <= 0 ? 0 : saved * ranks * m / (ranks - 1);
    }
}
