namespace Dynamo.Llm.Routing;

/// <summary>A request waiting in the <see cref="AdmissionQueue"/>: its completion is the caller's task.</summary>
internal sealed class QueuedRoute(PendingRoute request)
{
    public PendingRoute Request { get; } = request;

    public TaskCompletionSource<RoutingDecision> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LinkedListNode<QueuedRoute>? Node { get; set; }

    public CancellationTokenRegistration Registration { get; set; }

    /// <summary>Rejects the request when it has waited <see cref="KvRouterOptions.QueueTimeout"/>; disposed when it leaves the queue.</summary>
    public ITimer? Timer { get; set; }

    /// <summary>Stops watching the request's cancellation and its queue timeout (never blocking on a callback that runs).</summary>
    public void StopWatching()
    {
        Registration.Unregister();
        Timer?.Dispose();
    }
}
