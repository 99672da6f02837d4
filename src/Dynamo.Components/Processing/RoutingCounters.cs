using System.Collections.Concurrent;

namespace Dynamo.Components.Processing;

/// <summary>
/// Routing decisions as one pipeline made them (thread-safe), whatever the router mode: attempts sent to each
/// worker, by model (a migrated stream's next attempt counts again, on its new worker).
/// </summary>
public sealed class RoutingCounters
{
    private readonly ConcurrentDictionary<(string Model, long WorkerId), long> _routed = new();

    /// <summary>Counts one attempt of a request for <paramref name="model"/> sent to <paramref name="workerId"/>.</summary>
    public void Routed(string model, long workerId) => _routed.AddOrUpdate((model, workerId), 1, static (_, n) => n + 1);

    /// <summary>Every (model, worker) so far with its count.</summary>
    public IReadOnlyList<(string Model, long WorkerId, long Count)> Snapshot() =>
        [.. _routed.OrderBy(p => p.Key.Model, StringComparer.Ordinal).ThenBy(p => p.Key.WorkerId).Select(p => (p.Key.Model, p.Key.WorkerId, p.Value))];
}
