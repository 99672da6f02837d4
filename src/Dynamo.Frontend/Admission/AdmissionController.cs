using Dynamo.Frontend.Observability;

namespace Dynamo.Frontend.Admission;

/// <summary>
/// The frontend's admission: at most <see cref="AdmissionOptions.MaxInflightRequests"/> requests generate at once;
/// the next ones wait in a queue of at most <see cref="AdmissionOptions.MaxQueuedRequests"/>, served by priority
/// (lower value first, first come first served within one), each for at most <see cref="AdmissionOptions.QueueTimeout"/>.
/// A full queue refuses the newcomer unless it has a higher priority than the lowest waiting request, which it
/// then displaces. Per-client and per-model limits refuse at once. Every refusal is an OpenAI error (see
/// <see cref="OverloadErrors"/>) thrown before the response's first byte. Thread-safe: one gate guards the slot
/// count, the queue and the per-client and per-model counts; the invariants are in this folder's README.md.
/// </summary>
internal sealed class AdmissionController
{
    private readonly Lock _gate = new();
    private readonly AdmissionOptions _options;
    private readonly FrontendMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly SortedSet<AdmissionWaiter> _queue = new(AdmissionWaiter.Order);
    private readonly Dictionary<string, int> _perClient = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _perModel = new(StringComparer.Ordinal);
    private long _arrivals;
    private int _running;

    public AdmissionController(AdmissionOptions options, FrontendMetrics metrics, TimeProvider? time = null)
    {
        _options = options;
        _metrics = metrics;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Requests holding a slot now.</summary>
    public int Running
    {
        get
        {
            lock (_gate)
            {
                return _running;
            }
        }
    }

    /// <summary>Requests waiting for a slot now.</summary>
    public int Queued
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>
    /// A slot for a request of <paramref name="client"/> for <paramref name="model"/>: at once when one is free and
    /// nobody waits, else after waiting its turn. Throws <see cref="Llm.Protocols.OpenAi.OpenAiException"/> (429 over a
    /// per-client or per-model limit; 503 when the queue is full, the request is displaced or its wait times out)
    /// and <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> ends the wait.
    /// </summary>
    public ValueTask<AdmissionSlot> EnterAsync(string client, string model, int priority, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        AdmissionWaiter waiter;
        lock (_gate)
        {
            if (_options.MaxInflightPerClient > 0 && CountOf(_perClient, client) >= _options.MaxInflightPerClient)
            {
                throw OverloadErrors.ClientLimitError(_options.MaxInflightPerClient);
            }

            if (_options.MaxInflightPerModel > 0 && CountOf(_perModel, model) >= _options.MaxInflightPerModel)
            {
                throw OverloadErrors.ModelLimitError(model, _options.MaxInflightPerModel);
            }

            var slot = new AdmissionSlot(this, client, model);
            if (_running < _options.MaxInflightRequests && _queue.Count == 0)
            {
                Count(slot, +1);
                _running++;
                return ValueTask.FromResult(slot);
            }

            if (_queue.Count >= _options.MaxQueuedRequests)
            {
                // Lower priority values go first: the queue's last is the lowest priority, latest arrival.
                if (_queue.Count == 0 || _queue.Max!.Priority <= priority)
                {
                    throw OverloadErrors.QueueFullError(_queue.Count, displaced: false);
                }

                AdmissionWaiter displaced = _queue.Max!;
                Dequeue(displaced);
                Count(displaced.Slot, -1);
                displaced.Completion.TrySetException(OverloadErrors.QueueFullError(_queue.Count + 1, displaced: true));
            }

            Count(slot, +1);
            waiter = new AdmissionWaiter(slot, priority, _arrivals++);
            _queue.Add(waiter);
            _metrics.Queued.WithLabels(model, FrontendMetrics.AdmissionStage).Inc();
        }

        // Outside the gate: a token cancelled meanwhile runs its callback here, which takes the gate.
        ITimer timer = _time.CreateTimer(static state => ((AdmissionWaiter)state!).Slot.Owner.TimedOut((AdmissionWaiter)state), waiter, _options.QueueTimeout, Timeout.InfiniteTimeSpan);
        CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(static (state, token) => ((AdmissionWaiter)state!).Slot.Owner.Cancelled((AdmissionWaiter)state, token), waiter);
        lock (_gate)
        {
            waiter.Attach(timer, registration);
        }

        return new ValueTask<AdmissionSlot>(waiter.Completion.Task);
    }

    /// <summary>Gives a slot (or a waiting request's place) back and hands free slots to the waiting requests in order.</summary>
    internal void Release(AdmissionSlot slot)
    {
        lock (_gate)
        {
            Count(slot, -1);
            _running--;
            while (_running < _options.MaxInflightRequests && _queue.Count > 0)
            {
                AdmissionWaiter next = _queue.Min!;
                Dequeue(next);
                _running++;
                next.Completion.TrySetResult(next.Slot);
            }
        }
    }

    private void TimedOut(AdmissionWaiter waiter)
    {
        lock (_gate)
        {
            if (!waiter.Left)
            {
                Dequeue(waiter);
                Count(waiter.Slot, -1);
                waiter.Completion.TrySetException(OverloadErrors.QueueTimeoutError(_options.QueueTimeout));
            }
        }
    }

    private void Cancelled(AdmissionWaiter waiter, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (!waiter.Left)
            {
                Dequeue(waiter);
                Count(waiter.Slot, -1);
                waiter.Completion.TrySetCanceled(cancellationToken);
            }
        }
    }

    // Under _gate.
    private void Dequeue(AdmissionWaiter waiter)
    {
        _queue.Remove(waiter);
        waiter.Leave();
        _metrics.Queued.WithLabels(waiter.Slot.Model, FrontendMetrics.AdmissionStage).Dec();
    }

    // Under _gate: a request enters (+1) or leaves (-1) its client's and its model's counts.
    private void Count(AdmissionSlot slot, int delta)
    {
        Add(_perClient, slot.Client, delta);
        Add(_perModel, slot.Model, delta);
    }

    private static int CountOf(Dictionary<string, int> counts, string key) => counts.GetValueOrDefault(key);

    private static void Add(Dictionary<string, int> counts, string key, int delta)
    {
        int now = counts.GetValueOrDefault(key) + delta;
        if (now == 0)
        {
            counts.Remove(key);
        }
        else
        {
            counts[key] = now;
        }
    }
}
