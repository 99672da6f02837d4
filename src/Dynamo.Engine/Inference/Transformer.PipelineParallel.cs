using Dynamo.Engine.Kernels;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Engine.Inference;

/// <summary>
/// Pipeline parallelism: each rank is a stage holding consecutive layers (<see cref="PipelineStageWeights"/>) and a KV
/// cache of those layers only (the same block ids on every rank: rank 0's block manager decides). Rank 0 (stage 0, the
/// embedding) is the one the engine drives; it broadcasts each pass's plan as tensor parallelism does, and the other
/// stages run <see cref="Follow"/>. A pass's tokens are cut into <see cref="MicroBatches"/> micro-batches (each at most
/// MaxBatch tokens); every stage runs them in order, receiving a micro-batch's hidden states (tokens x dim floats) from
/// the previous stage and sending its own to the next through a <see cref="PipelineSender"/>, so that stage s works on
/// micro-batch m while stage s + 1 works on m - 1. The last stage applies the final norm and the output projection to the
/// rows that sample and sends those logits to rank 0, which takes them after its own micro-batches. No sum is split or
/// reordered: every value is computed exactly as one process computes it, so the logits are the same bits.
/// </summary>
public sealed partial class Transformer
{
    private readonly PipelineStageWeights? _pipeline;
    private readonly PipelineSender? _sender;
    private readonly List<(int Row, int Rows)> _pendingLogits = [];
    private float[] _stageLogits = [];

    /// <summary>This rank's stage of a pipeline-parallel model, or null.</summary>
    public PipelineStageWeights? PipelineStage => _pipeline;

    /// <summary>
    /// Rank 0 of a pipeline: how many micro-batches a pass is cut into (at least 1; default the number of stages). Sent
    /// with each plan, so only rank 0's counts. More keep more stages busy at once on a batch; each costs a transfer.
    /// </summary>
    public int MicroBatches
    {
        get;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            field = value;
        }
    } = 1;

    /// <summary>The micro-batches of the passes this rank leads: 1 unless it is a pipeline.</summary>
    private int PassMicroBatches => _pipeline is null ? 1 : MicroBatches;

    private static PipelineStageWeights? Stage(Dynamo.Engine.Models.IModelWeights weights, ICollectiveGroup? group)
    {
        if (weights is not PipelineStageWeights stage)
        {
            return null;
        }

        if (group is null ? stage.Stages != 1 : group.Size != stage.Stages || group.Rank != stage.Stage)
        {
            throw new ArgumentException($"pipeline stage {stage.Stage} of {stage.Stages} needs that rank's collective group; got {(group is null ? "none" : $"rank {group.Rank} of {group.Size}")}", nameof(group));
        }

        return stage.Stages == 1 ? null : stage;
    }

    /// <summary>A later stage: the hidden states of this micro-batch from the stage before.</summary>
    private void ReceiveActivations(Span<float> x, ForwardProfile? profile)
    {
        _group!.Receive(x, _group.Rank - 1);
        profile?.Mark(ForwardProfile.Communication);
    }

    /// <summary>The last stage: final norm was applied to <paramref name="normed"/>; the logits of those rows go to rank 0.</summary>
    private void SendLogits(ReadOnlySpan<float> normed, int rows, ForwardProfile? profile)
    {
        int vocab = Config.VocabSize;
        if (_stageLogits.Length < rows * vocab)
        {
            _stageLogits = new float[Math.Max(rows, 8) * vocab];
        }

        Span<float> logits = _stageLogits.AsSpan(0, rows * vocab);
        MatMul.Multiply(_output!, normed, logits, rows);
        profile?.Mark(ForwardProfile.Logits);
        _sender!.Enqueue(logits, 0);
        profile?.Mark(ForwardProfile.Communication);
    }

    /// <summary>
    /// The end of a pass on any stage: rank 0 takes the logits of its micro-batches from the last stage, in order; every
    /// stage waits until its sends are handed over, so that nothing it sent overlaps the next collective.
    /// </summary>
    private void FinishPass(Span<float> logits)
    {
        ForwardProfile? profile = Profile;
        if (_group!.Rank == 0)
        {
            int vocab = Config.VocabSize, last = _group.Size - 1;
            foreach ((int row, int rows) in _pendingLogits)
            {
                Span<float> into = logits.IsEmpty ? Span<float>.Empty : logits.Slice(row * vocab, rows * vocab);
                _group.Receive(into, last);
                profile?.Mark(ForwardProfile.Communication);
            }
        }

        _sender!.Flush();
    }
}
