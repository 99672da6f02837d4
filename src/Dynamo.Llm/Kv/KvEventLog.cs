namespace Dynamo.Llm.Kv;

/// <summary>
/// One worker's KV event stream, as its producer (the block pool, the mocker) writes it: assigns ids
/// (1, 2, 3, ... with no holes), keeps the last <see cref="Capacity"/> events for consumers that fell
/// behind, and publishes each event as it is appended. Thread-safe: appends come from the engine
/// thread, reads from any.
/// </summary>
public sealed class KvEventLog
{
    private readonly Lock _appendGate = new();
    private readonly Lock _stateGate = new();
    private readonly KvEvent[] _ring;
    private readonly double _lossRate;
    private readonly Random? _loss;
    private ulong _lastEventId;

    public KvEventLog(long workerId, int capacity = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        WorkerId = workerId;
        _ring = new KvEvent[capacity];
    }

    /// <summary>
    /// Fault injection (the mocker's <c>--kv-event-loss</c>): makes <see cref="Append"/> lose that share of the
    /// events, drawn from <paramref name="seed"/>, without a trace: a lost event takes no id, so no consumer sees a
    /// gap, while the pool's state (and so its dump) is the true one. This is the failure that only the router's
    /// accuracy check can find (a worker whose event bridge drops events before numbering them).
    /// </summary>
    public KvEventLog(long workerId, int capacity, double lossRate, ulong seed)
        : this(workerId, capacity)
    {
        if (!double.IsFinite(lossRate) || lossRate is < 0 or > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(lossRate), lossRate, "a loss rate is 0..1");
        }

        _lossRate = lossRate;
        _loss = lossRate > 0 ? new Random((int)(seed ^ (seed >> 32)) ^ (int)workerId) : null;
    }

    /// <summary>Events <see cref="Append"/> lost on purpose (<see cref="KvEventLog(long, int, double, ulong)"/>).</summary>
    public long Lost { get; private set; }

    /// <summary>
    /// Raised for every appended event, synchronously on the appending thread, after the event is stored,
    /// in id order (appends wait for the previous append's handlers). Handlers should be quick; an
    /// exception from one reaches the caller of <see cref="Append"/>, with the event already logged.
    /// </summary>
    public event Action<KvEvent>? Published;

    public long WorkerId { get; }

    /// <summary>How many of the latest events are kept for <see cref="TryGetSince"/>.</summary>
    public int Capacity => _ring.Length;

    /// <summary>The id of the latest event; 0 before the first.</summary>
    public ulong LastEventId
    {
        get
        {
            lock (_stateGate)
            {
                return _lastEventId;
            }
        }
    }

    /// <summary>Logs <paramref name="data"/> as the next event, publishes it, and returns it (null: lost on purpose, see <see cref="Lost"/>).</summary>
    public KvEvent? Append(KvEventData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        lock (_appendGate)
        {
            if (_loss is not null && _loss.NextDouble() < _lossRate)
            {
                Lost++;
                return null;
            }

            KvEvent kvEvent;
            lock (_stateGate)
            {
                kvEvent = new KvEvent(WorkerId, _lastEventId + 1, data);
                _ring[(int)((kvEvent.EventId - 1) % (ulong)_ring.Length)] = kvEvent;
                _lastEventId = kvEvent.EventId;
            }

            Published?.Invoke(kvEvent);
            return kvEvent;
        }
    }

    /// <summary>
    /// The events with ids above <paramref name="afterEventId"/>, in order. False (and no events) when some
    /// of them are no longer kept: the consumer then needs a full <see cref="KvEventDump"/>. An
    /// <paramref name="afterEventId"/> at or past <see cref="LastEventId"/> gives true and no events.
    /// </summary>
    public bool TryGetSince(ulong afterEventId, out IReadOnlyList<KvEvent> events)
    {
        lock (_stateGate)
        {
            if (afterEventId >= _lastEventId)
            {
                events = [];
                return true;
            }

            ulong kept = Math.Min(_lastEventId, (ulong)_ring.Length);
            ulong oldestKept = _lastEventId - kept + 1;
            if (afterEventId + 1 < oldestKept)
            {
                events = [];
                return false;
            }

            var result = new KvEvent[(int)(_lastEventId - afterEventId)];
            for (int i = 0; i < result.Length; i++)
            {
                ulong id = afterEventId + 1 + (ulong)i;
                result[i] = _ring[(int)((id - 1) % (ulong)_ring.Length)];
            }

            events = result;
            return true;
        }
    }
}
