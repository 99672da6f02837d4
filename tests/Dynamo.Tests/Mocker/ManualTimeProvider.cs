using System.Diagnostics;

namespace Dynamo.Tests.Mocker;

/// <summary>
/// A clock that moves only when the test calls <see cref="Advance"/>; timers (and so
/// <c>Task.Delay(TimeSpan, TimeProvider)</c>) fire there, in due order, on the calling thread.
/// </summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private static readonly DateTimeOffset Start = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly Lock _gate = new();
    private readonly List<ManualTimer> _timers = [];
    private long _now;

    /// <summary>Time advanced so far.</summary>
    public TimeSpan Elapsed => TimeSpan.FromTicks(Volatile.Read(ref _now));

    public override DateTimeOffset GetUtcNow() => Start + Elapsed;

    public override long GetTimestamp() => Volatile.Read(ref _now);

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Waits (real time, up to <paramref name="timeout"/>) until a timer is pending; returns how far ahead the earliest is due.</summary>
    public async Task<TimeSpan> NextDueAsync(TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < (timeout ?? TimeSpan.FromSeconds(10)))
        {
            lock (_gate)
            {
                if (_timers.Count > 0)
                {
                    return TimeSpan.FromTicks(_timers.Min(t => t.Due) - _now);
                }
            }

            await Task.Delay(1);
        }

        throw new TimeoutException("no timer was started");
    }

    /// <summary>Moves the clock forward, firing every timer that comes due.</summary>
    public void Advance(TimeSpan by)
    {
        long target;
        lock (_gate)
        {
            target = _now + by.Ticks;
        }

        while (true)
        {
            ManualTimer? next;
            lock (_gate)
            {
                next = _timers.Where(t => t.Due <= target).MinBy(t => t.Due);
                if (next is null)
                {
                    Volatile.Write(ref _now, target);
                    return;
                }

                Volatile.Write(ref _now, Math.Max(_now, next.Due));
                _timers.Remove(next);
                if (next.Period > 0)
                {
                    next.Due += next.Period;
                    _timers.Add(next);
                }
            }

            next.Fire();
        }
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        public long Due { get; set; }

        public long Period { get; private set; }

        public void Fire() => callback(state);

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (owner._gate)
            {
                owner._timers.Remove(this);
                Period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;
                if (dueTime == Timeout.InfiniteTimeSpan)
                {
                    return true;
                }

                Due = owner._now + dueTime.Ticks;
                owner._timers.Add(this);
            }

            return true;
        }

        public void Dispose()
        {
            lock (owner._gate)
            {
                owner._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
