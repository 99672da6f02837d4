using System.Collections.Concurrent;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Llm.Disaggregation;

/// <summary>
/// One model's disaggregation as a router sees it (thread-safe): its decisions by (remote, reason), and the
/// per-request breakdown of the requests routed with prefill workers: the wait for a route, and, from each
/// decode worker's last response, where the prefill actually ran and what the prefill and the transfer took.
/// </summary>
public sealed class DisaggregationCounters
{
    private readonly ConcurrentDictionary<(bool Remote, string Reason), long> _decisions = new();
    private readonly ConcurrentDictionary<string, long> _fallbacks = new(StringComparer.Ordinal);
    private long _remote;
    private long _routeWaits;
    private long _routeWaitTicks;
    private long _prefillTicks;
    private long _transferTicks;
    private long _transferBytes;

    /// <summary>Counts one decision.</summary>
    public void Count(DisaggregationDecision decision) => _decisions.AddOrUpdate((decision.Remote, decision.Reason), 1, static (_, n) => n + 1);

    /// <summary>Every (remote, reason) counted so far, with its count.</summary>
    public IReadOnlyList<(bool Remote, string Reason, long Count)> Snapshot() =>
        [.. _decisions.OrderBy(p => p.Key.Remote).ThenBy(p => p.Key.Reason, StringComparer.Ordinal).Select(p => (p.Key.Remote, p.Key.Reason, p.Value))];

    /// <summary>Decisions for a remote prefill so far.</summary>
    public long Remote => _decisions.Where(p => p.Key.Remote).Sum(p => p.Value);

    /// <summary>Decisions for a local prefill so far.</summary>
    public long Local => _decisions.Where(p => !p.Key.Remote).Sum(p => p.Value);

    /// <summary>Requests whose KV did come from a prefill worker (the decode workers' reports).</summary>
    public long RemoteCompleted => Interlocked.Read(ref _remote);

    /// <summary>Requests sent for a remote prefill that the decode worker prefilled itself, by its reason.</summary>
    public IReadOnlyList<(string Reason, long Count)> Fallbacks => [.. _fallbacks.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value))];

    /// <summary>Routes taken (the count of <see cref="RouteWaitSeconds"/>).</summary>
    public long RouteWaits => Interlocked.Read(ref _routeWaits);

    /// <summary>Seconds requests waited for their route (router queue and decision), summed.</summary>
    public double RouteWaitSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _routeWaitTicks)).TotalSeconds;

    /// <summary>Seconds of remote prefills (ask to KV arrival, as the decode workers measured), summed over <see cref="RemoteCompleted"/>.</summary>
    public double PrefillSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _prefillTicks)).TotalSeconds;

    /// <summary>Seconds of KV transfers (as the prefill workers measured their sends), summed over <see cref="RemoteCompleted"/>.</summary>
    public double TransferSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _transferTicks)).TotalSeconds;

    /// <summary>Bytes of KV transferred for this model's requests.</summary>
    public long TransferBytes => Interlocked.Read(ref _transferBytes);

    /// <summary>Counts the wait of one request for its route.</summary>
    public void ObserveRouteWait(TimeSpan wait)
    {
        Interlocked.Increment(ref _routeWaits);
        Interlocked.Add(ref _routeWaitTicks, wait.Ticks);
    }

    /// <summary>Counts a decode worker's report of where a request's prefill ran.</summary>
    public void Observe(PrefillReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (!report.Remote)
        {
            _fallbacks.AddOrUpdate(report.FallbackReason ?? "unknown", 1, static (_, n) => n + 1);
            return;
        }

        Interlocked.Increment(ref _remote);
        Interlocked.Add(ref _prefillTicks, TimeSpan.FromMilliseconds(report.PrefillMs ?? 0).Ticks);
        Interlocked.Add(ref _transferTicks, TimeSpan.FromMilliseconds(report.TransferMs ?? 0).Ticks);
        Interlocked.Add(ref _transferBytes, report.TransferBytes ?? 0);
    }
}
