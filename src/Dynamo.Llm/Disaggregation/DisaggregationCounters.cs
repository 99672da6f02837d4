using System.Collections.Concurrent;

namespace Dynamo.Llm.Disaggregation;

/// <summary>Decisions of a <see cref="DisaggregatedRouter"/> by (remote, reason); thread-safe.</summary>
public sealed class DisaggregationCounters
{
    private readonly ConcurrentDictionary<(bool Remote, string Reason), long> _decisions = new();

    /// <summary>Counts one decision.</summary>
    public void Count(DisaggregationDecision decision) => _decisions.AddOrUpdate((decision.Remote, decision.Reason), 1, static (_, n) => n + 1);

    /// <summary>Every (remote, reason) counted so far, with its count.</summary>
    public IReadOnlyList<(bool Remote, string Reason, long Count)> Snapshot() =>
        [.. _decisions.OrderBy(p => p.Key.Remote).ThenBy(p => p.Key.Reason, StringComparer.Ordinal).Select(p => (p.Key.Remote, p.Key.Reason, p.Value))];

    /// <summary>Decisions for a remote prefill so far.</summary>
    public long Remote => _decisions.Where(p => p.Key.Remote).Sum(p => p.Value);

    /// <summary>Decisions for a local prefill so far.</summary>
    public long Local => _decisions.Where(p => !p.Key.Remote).Sum(p => p.Value);
}
