using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Llm.Routing;

/// <summary>
/// A routed request's hold on its worker: where to send it (<see cref="WorkerId"/>) and the load the router
/// charged for it. The caller calls <see cref="MarkFirstToken"/> when the first token arrives,
/// <see cref="Complete"/> when the stream ends (finished, failed or cancelled; with the engine's cached-token
/// count when known), and always disposes it, which releases whatever is still charged. Every call is
/// idempotent and thread-safe. A route involving more than one worker (a remote prefill) is a lease that
/// charges and releases each of them and says so to the worker through <see cref="Prepare"/>.
/// </summary>
public abstract class WorkerLease : IAsyncDisposable
{
    /// <summary>A lease on <paramref name="workerId"/> (on its data-parallel rank <paramref name="dpRank"/>, when the router chose one).</summary>
    protected WorkerLease(long workerId, int? dpRank = null)
    {
        WorkerId = workerId;
        DpRank = dpRank;
    }

    /// <summary>The chosen worker's instance id: the request is sent there and its tokens stream from there.</summary>
    public long WorkerId { get; }

    /// <summary>
    /// The chosen data-parallel rank of that worker (<see cref="RoutingTarget"/>), written into the generate request by
    /// <see cref="Prepare"/>; null when the router chose a worker only (the worker then picks its least loaded rank).
    /// </summary>
    public int? DpRank { get; }

    /// <summary>Prompt tokens the router expects the worker to serve from its cache (0 when it does not predict).</summary>
    public virtual int PredictedCachedTokens => 0;

    /// <summary>A lease that charges nothing (round-robin, random, and fallbacks).</summary>
    public static WorkerLease Unmetered(long workerId) => new UnmeteredLease(workerId);

    /// <summary>The first token arrived: the request's prompt no longer counts as prefill work.</summary>
    public virtual void MarkFirstToken()
    {
    }

    /// <summary>
    /// The stream ended (finished, failed or cancelled): releases the load. <paramref name="actualCachedTokens"/>
    /// is the engine's cached-token count when known (the final response's <c>cached_tokens</c>), and
    /// <paramref name="outputTokens"/> the tokens the worker generated for it when known (a router counts the blocks
    /// they filled in the worker's eviction estimate).
    /// </summary>
    public virtual void Complete(int? actualCachedTokens = null, int? outputTokens = null)
    {
    }

    /// <summary>
    /// The generate request as the chosen worker must receive it: with the chosen <see cref="DpRank"/>, and whatever
    /// else the route involves that the chosen worker must know of. Called once per attempt, before sending.
    /// </summary>
    public virtual GenerateRequest Prepare(GenerateRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return DpRank is int rank ? request with { DpRank = rank } : request;
    }

    /// <summary>Releases what is still charged (as <see cref="Complete"/> without a count).</summary>
    public virtual ValueTask DisposeAsync()
    {
        Complete();
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    private sealed class UnmeteredLease(long workerId) : WorkerLease(workerId);
}
