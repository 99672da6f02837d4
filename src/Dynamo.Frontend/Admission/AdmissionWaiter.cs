namespace Dynamo.Frontend.Admission;

/// <summary>
/// A request waiting in the <see cref="AdmissionController"/>'s queue: its slot-to-be, its priority and arrival
/// number (the queue's order), its completion (the caller's task) and what ends its wait early (the queue
/// timeout's timer, the request's cancellation). Mutable state is touched under the controller's gate only.
/// </summary>
internal sealed class AdmissionWaiter(AdmissionSlot slot, int priority, long sequence)
{
    /// <summary>Served first: the lowest priority value, then the earliest arrival. The queue's last is the one displaced.</summary>
    public static IComparer<AdmissionWaiter> Order { get; } = Comparer<AdmissionWaiter>.Create(static (a, b) =>
        a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : a.Sequence.CompareTo(b.Sequence));

    public AdmissionSlot Slot { get; } = slot;

    /// <summary>Lower is served earlier (vLLM's convention).</summary>
    public int Priority { get; } = priority;

    public long Sequence { get; } = sequence;

    public TaskCompletionSource<AdmissionSlot> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True once the waiter left the queue (admitted, refused, timed out or cancelled).</summary>
    public bool Left { get; private set; }

    private ITimer? _timer;
    private CancellationTokenRegistration _registration;

    /// <summary>Keeps what may end the wait early; disposes it at once when the waiter already left.</summary>
    public void Attach(ITimer timer, CancellationTokenRegistration registration)
    {
        _timer = timer;
        _registration = registration;
        if (Left)
        {
            Detach();
        }
    }

    /// <summary>Marks the waiter as out of the queue and stops its timer and cancellation callback (never blocking on them).</summary>
    public void Leave()
    {
        Left = true;
        Detach();
    }

    private void Detach()
    {
        _timer?.Dispose();
        _registration.Unregister();
    }
}
