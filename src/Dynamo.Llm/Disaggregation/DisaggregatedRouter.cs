using Dynamo.Llm.Routing;

namespace Dynamo.Llm.Disaggregation;

/// <summary>
/// The route of a request to a model served by decode and prefill workers: the decode worker by the
/// endpoint's own policy (<paramref name="decode"/>, any mode), then <see cref="DisaggregationPolicy"/> on its
/// predicted prefix hit and the prefill queue, then, for a remote prefill, the prefill worker by the pool's
/// KV-aware router. Both are charged; the lease tells the decode worker where to prefill
/// (<see cref="Protocols.Worker.GenerateRequest.RemotePrefill"/>) and releases the prefill worker's charge at
/// the first token (its prefill is over by then, remote or fallen back). Every decision is counted.
/// </summary>
public sealed class DisaggregatedRouter(IWorkerRouter decode, IPrefillPool pool, DisaggregationCounters counters) : IWorkerRouter
{
    /// <inheritdoc/>
    public string Name => decode.Name;

    /// <inheritdoc/>
    public async ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        WorkerLease lease = await decode.RouteAsync(request, cancellationToken).ConfigureAwait(false);
        try
        {
            IReadOnlyList<long> prefill = pool.Candidates;
            DisaggregationDecision decision = pool.AcceptsRemotePrefill(lease.WorkerId)
                ? DisaggregationPolicy.Decide(pool.Settings, request.TokenIds.Count, lease.PredictedCachedTokens, prefill.Count == 0 ? 0 : pool.QueuedRequests(), prefill.Count)
                : new DisaggregationDecision(false, PrefillReasons.DecodeOptedOut);
            WorkerLease? prefillLease = null;
            if (decision.Remote)
            {
                try
                {
                    prefillLease = await pool.Router.RouteAsync(request with { Candidates = prefill }, cancellationToken).ConfigureAwait(false);
                }
                catch (RouterRejectedException)
                {
                    decision = new DisaggregationDecision(false, PrefillReasons.PrefillRejected);
                }
            }

            counters.Count(decision);
            return prefillLease is null ? lease : new DisaggregatedLease(lease, prefillLease, pool.Endpoint);
        }
        catch
        {
            await lease.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Nothing: the decode and prefill routers belong to their endpoints.</summary>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
