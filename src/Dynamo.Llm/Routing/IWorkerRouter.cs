namespace Dynamo.Llm.Routing;

/// <summary>
/// A routing policy for the workers of one endpoint: chooses the worker for a request among candidates
/// the caller has already filtered (instances that serve the request's model, are available, and have not
/// failed this request), and charges it whatever load the policy counts. The caller sends the request to
/// <see cref="WorkerLease.WorkerId"/> and holds the lease until the stream ends. Round-robin, random and
/// the KV router implement it; the caller never knows which (Routing/README.md, "One routing seam").
/// </summary>
public interface IWorkerRouter : IAsyncDisposable
{
    /// <summary>The router mode's name ("round-robin", "random", "kv").</summary>
    string Name { get; }

    /// <summary>
    /// Chooses a worker among <see cref="WorkerRouteRequest.Candidates"/> (never empty). May wait (the KV
    /// router queues while every worker is saturated); refuses with <see cref="RouterRejectedException"/>
    /// (its <see cref="RouterRejectedException.Reason"/> says why); <see cref="OperationCanceledException"/>
    /// when cancelled while waiting. The caller must dispose the lease.
    /// </summary>
    ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default);
}
