namespace Dynamo.Load.Simulation;

/// <summary>
/// A discrete-event clock: a <see cref="TimeProvider"/> whose time moves only when <see cref="RunNext"/> takes the
/// earliest scheduled event, and whose timers (<see cref="CreateTimer"/>: the router's queue timeouts, the recent-prefix
/// window's clock) are events of the same queue. Events at the same time run in the order they were scheduled, so a
/// run is a pure function of its inputs. Not thread-safe: one simulation loop owns it; nothing here ever waits.
/// </summary>
internal sealed class VirtualClock : TimeProvider
{
    private static readonly DateTimeOffset Epoch = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly PriorityQueue<Entry, (long Ticks, long Order)> _queue = new();
    private long _order;

    /// <summary>Virtual time since the simulation began.</summary>
    public TimeSpan Now { get; private set; }

    /// <summary>Events and timer callbacks run so far.</summary>
    public long EventsRun { get; private set; }

    /// <summary>Events (and armed timers) waiting.</summary>
    public int Pending => _queue.Count;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Now.Ticks;

    public override DateTimeOffset GetUtcNow() => Epoch + Now;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    /// <summary>Runs <paramref name="action"/> at virtual time <paramref name="at"/> (now, if that has passed).</summary>
    public void At(TimeSpan at, Action action) => Enqueue(at, new Entry(action, null, 0));

    /// <summary>Runs <paramref name="action"/> after <paramref name="delay"/> of virtual time.</summary>
    public void After(TimeSpan delay, Action action) => At(Now + delay, action);

    /// <summary>Advances to the earliest event and runs it; false when none is left.</summary>
    public bool RunNext()
    {
        while (_queue.TryDequeue(out Entry entry, out (long Ticks, long Order) key))
        {
            if (entry.Timer is { } timer && timer.Generation != entry.Generation)
            {
                continue; // changed or disposed since it was armed
            }

            Now = TimeSpan.FromTicks(Math.Max(Now.Ticks, key.Ticks));
            EventsRun++;
            if (entry.Timer is { } fired)
            {
                fired.Fire();
            }
            else
            {
                entry.Action!();
            }

            return true;
        }

        return false;
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new VirtualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    private void Enqueue(TimeSpan at, Entry entry) => _queue.Enqueue(entry, (Math.Max(at.Ticks, Now.Ticks), _order++));

    private readonly record struct Entry(Action? Action, VirtualTimer? Timer, long Generation);

    /// <summary>A timer on the virtual clock: each <see cref="Change"/> arms a new generation; older entries are skipped.</summary>
    private sealed class VirtualTimer(VirtualClock clock, TimerCallback callback, object? state) : ITimer
    {
        private TimeSpan _period = Timeout.InfiniteTimeSpan;

        public long Generation { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            Generation++;
            _period = period;
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                clock.Enqueue(clock.Now + dueTime, new Entry(null, this, Generation));
            }

            return true;
        }

        public void Fire()
        {
            if (_period != Timeout.InfiniteTimeSpan && _period > TimeSpan.Zero)
            {
                clock.Enqueue(clock.Now + _period, new Entry(null, this, Generation));
            }

            callback(state);
        }

        public void Dispose() => Generation++;

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
