using System.Diagnostics;

namespace Dynamo.Engine.Inference;

/// <summary>
/// Where a forward pass spends its time, by phase, summed over every layer and call while attached to a
/// <see cref="Transformer"/> (<c>dynamo bench forward --profile</c>). Timestamps are taken between
/// phases on the calling thread (the kernels' worker threads finish inside each phase).
/// </summary>
public sealed class ForwardProfile
{
    /// <summary>The phases, in the order a layer runs them; "communication" is a tensor-parallel rank's collectives.</summary>
    public static IReadOnlyList<string> Phases { get; } =
        ["embedding", "attention norm", "q/k/v projections", "rope + kv write", "attention", "output projection", "ffn norm", "ffn gate/up", "ffn down", "logits", "communication"];

    internal const int Embedding = 0, AttentionNorm = 1, Qkv = 2, Rope = 3, Attention = 4, OutputProjection = 5, FfnNorm = 6, GateUp = 7, Down = 8, Logits = 9, Communication = 10;

    private readonly long[] _ticks = new long[Phases.Count];
    private long _last;

    /// <summary>Time per phase so far.</summary>
    public IReadOnlyList<TimeSpan> Times => [.. _ticks.Select(t => Stopwatch.GetElapsedTime(0, t))];

    /// <summary>Forgets the times so far.</summary>
    public void Reset() => Array.Clear(_ticks);

    internal void Start() => _last = Stopwatch.GetTimestamp();

    /// <summary>Charges the time since the last mark to <paramref name="phase"/>.</summary>
    internal void Mark(int phase)
    {
        long now = Stopwatch.GetTimestamp();
        _ticks[phase] += now - _last;
        _last = now;
    }
}
