namespace Dynamo.Llm.Scheduling;

/// <summary>What one step computes: chunks of running sequences, at most one per sequence, in batch order.</summary>
public sealed class SchedulerStep
{
    private readonly List<ScheduledChunk> _chunks = [];

    public IReadOnlyList<ScheduledChunk> Chunks => _chunks;

    /// <summary>Tokens of all chunks together.</summary>
    public int TokenCount { get; private set; }

    /// <summary>Tokens of prefill chunks: every chunk but a sequence's one last token (<see cref="StepCost"/>'s P).</summary>
    public int PrefillTokens { get; private set; }

    /// <summary>Chunks of one token that sample: decoding sequences, and prompts whose last token was all that was left (<see cref="StepCost"/>'s D).</summary>
    public int DecodeTokens { get; private set; }

    /// <summary>The step's time as the scheduler predicted it when a step-time budget planned it, in milliseconds; 0 when none did.</summary>
    public double PredictedMs { get; internal set; }

    /// <summary>Sequences preempted while this step was planned.</summary>
    public int Preempted { get; internal set; }

    public bool IsEmpty => _chunks.Count == 0;

    internal void Add(ScheduledChunk chunk)
    {
        _chunks.Add(chunk);
        TokenCount += chunk.TokenCount;
        if (IsDecode(chunk))
        {
            DecodeTokens++;
        }
        else
        {
            PrefillTokens += chunk.TokenCount;
        }
    }

    /// <summary>Whether a chunk counts as a decode (one token, the sequence's last) rather than prefill.</summary>
    private static bool IsDecode(ScheduledChunk chunk) => chunk.TokenCount == 1 && chunk.SamplesToken;

    internal void Clear()
    {
        _chunks.Clear();
        TokenCount = 0;
        PrefillTokens = 0;
        DecodeTokens = 0;
        PredictedMs = 0;
        Preempted = 0;
    }
}
