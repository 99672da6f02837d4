namespace Dynamo.Llm.Routing;

/// <summary>A request waiting in the <see cref="AdmissionQueue"/>: its completion is the caller's task.</summary>
internal sealed class QueuedRoute(PendingRoute request)
{
    public PendingRoute Request { get; } = request;

    public TaskCompletionSource<RoutingDecision> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public LinkedListNode<QueuedRoute>? Node { get; set; }

    public CancellationTokenRegistration Registration { get; set; }
}
