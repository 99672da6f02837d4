namespace Dynamo.Llm.Scheduling;

/// <summary>What one step computes: chunks of running sequences, at most one per sequence, in batch order.</summary>
public sealed class SchedulerStep
{
    private readonly List<ScheduledChunk> _chunks = [];

    public IReadOnlyList<ScheduledChunk> Chunks => _chunks;

    /// <summary>Tokens of all chunks together.</summary>
    public int TokenCount { get; private set; }

    /// <summary>Sequences preempted while this step was planned.</summary>
    public int Preempted { get; internal set; }

    public bool IsEmpty => _chunks.Count == 0;

    internal void Add(ScheduledChunk chunk)
    {
        _chunks.Add(chunk);
        TokenCount += chunk.TokenCount;
    }

    internal void Clear()
    {
        _chunks.Clear();
        TokenCount = 0;
        Preempted = 0;
    }
}
