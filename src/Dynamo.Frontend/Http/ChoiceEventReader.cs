using System.Runtime.CompilerServices;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using Dynamo.Components.Processing;

namespace Dynamo.Frontend.Http;

/// <summary>
/// Reads a generation's events for one response, writing SSE keep-alive comments while none arrives (when
/// given an <see cref="SseWriter"/>). Waiting allocates nothing: one timer per response, re-armed when a wait
/// starts (never a timer, linked token source or task per wait); the channel's own reusable waiter, asked for
/// without a token; and a reusable completion source of this reader that whichever comes first completes:
/// an event (or the end), the keep-alive timer, or the request's cancellation, registered once. A stale tick
/// (the timer fired for an earlier wait just as an event came) is recognised by the time since the arming and
/// the timer is set again for the rest. One reader per response; one <see cref="NextAsync"/> at a time.
/// </summary>
internal sealed class ChoiceEventReader : IValueTaskSource<ChoiceEventReader.Wake>, IDisposable
{
    private const int Ready = 1;
    private const int Tick = 2;
    private const int Cancelled = 4;
    private const int Waiting = 8;

    private readonly ChannelReader<ChoiceEvent> _reader;
    private readonly SseWriter? _sse;
    private readonly TimeSpan _keepAliveInterval;
    private readonly TimeProvider _time;
    private readonly Action _onChannelReady;
    private ManualResetValueTaskSourceCore<Wake> _core;
    private int _signals;
    private ITimer? _timer;
    private bool _armed;
    private long _armedAt;
    private ConfiguredValueTaskAwaitable<bool>.ConfiguredValueTaskAwaiter _channelWait;
    private bool _channelWaiting;
    private CancellationToken _registeredFor;
    private CancellationTokenRegistration _registration;

    public ChoiceEventReader(ChannelReader<ChoiceEvent> reader, SseWriter? sse, TimeSpan keepAliveInterval, TimeProvider? time = null)
    {
        _reader = reader;
        _sse = sse;
        _keepAliveInterval = keepAliveInterval;
        _time = time ?? TimeProvider.System;
        _onChannelReady = () => Signal(Ready);
    }

    /// <summary>Why a wait ended.</summary>
    internal enum Wake
    {
        /// <summary>Nothing yet (a stale tick): wait again.</summary>
        None,

        /// <summary>An event is there (or the channel completed).</summary>
        Ready,

        /// <summary>A keep-alive is due.</summary>
        KeepAlive,

        /// <summary>The request was cancelled.</summary>
        Cancelled,
    }

    /// <summary>The next event; null at the end.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ChoiceEvent?> NextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_reader.TryRead(out ChoiceEvent e))
            {
                return e;
            }

            cancellationToken.ThrowIfCancellationRequested();
            switch (await WaitAsync(cancellationToken).ConfigureAwait(false))
            {
                case Wake.Ready:
                    _channelWaiting = false;
                    if (!_channelWait.GetResult())
                    {
                        return null;
                    }

                    break;
                case Wake.KeepAlive:
                    _sse!.WriteKeepAlive();
                    await _sse.FlushAsync(cancellationToken).ConfigureAwait(false);
                    break;
                case Wake.Cancelled:
                    cancellationToken.ThrowIfCancellationRequested();
                    break;
                default:
                    break;
            }
        }
    }

    public void Dispose()
    {
        _registration.Dispose();
        _timer?.Dispose();
    }

    Wake IValueTaskSource<Wake>.GetResult(short token)
    {
        _ = _core.GetResult(token);
        return Consume();
    }

    ValueTaskSourceStatus IValueTaskSource<Wake>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<Wake>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>Until an event is there (or the end), a keep-alive is due, or the request is cancelled.</summary>
    private ValueTask<Wake> WaitAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken != _registeredFor)
        {
            _registration.Dispose();
            _registeredFor = cancellationToken;
            _registration = cancellationToken.UnsafeRegister(static s => ((ChoiceEventReader)s!).Signal(Cancelled), this);
        }

        if (!_channelWaiting)
        {
            _channelWait = AwaiterOf(_reader.WaitToReadAsync(CancellationToken.None));
            _channelWaiting = true;
            if (_channelWait.IsCompleted)
            {
                return ValueTask.FromResult(Wake.Ready);
            }

            _channelWait.UnsafeOnCompleted(_onChannelReady);
        }

        if (_sse is not null && !_armed)
        {
            _timer ??= _time.CreateTimer(static s => ((ChoiceEventReader)s!).Signal(Tick), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _armedAt = _time.GetTimestamp();
            _armed = true;
            _timer.Change(_keepAliveInterval, Timeout.InfiniteTimeSpan);
        }

        _core.Reset();
        if (Interlocked.Or(ref _signals, Waiting) != 0)
        {
            // A signal came before the wait: no one completes the source, answer now.
            return ValueTask.FromResult(Consume());
        }

        return new ValueTask<Wake>(this, _core.Version);
    }

    /// <summary>
    /// Takes the signals: the channel first (a tick with it is dropped, and the next wait arms the timer
    /// afresh), then cancellation, then the keep-alive (a stale tick is dropped and the timer set for the rest).
    /// </summary>
    private Wake Consume()
    {
        int signals = Interlocked.Exchange(ref _signals, 0);
        if ((signals & Ready) != 0)
        {
            _armed = false;
            return Wake.Ready;
        }

        if ((signals & Cancelled) != 0)
        {
            return Wake.Cancelled;
        }

        if ((signals & Tick) != 0)
        {
            TimeSpan rest = _keepAliveInterval - _time.GetElapsedTime(_armedAt);
            if (rest <= TimeSpan.Zero)
            {
                _armed = false;
                return Wake.KeepAlive;
            }

            _timer!.Change(rest, Timeout.InfiniteTimeSpan);
        }

        return Wake.None;
    }

    /// <summary>The awaiter of the channel's wait, kept until it completes and its result is taken (once).</summary>
    private static ConfiguredValueTaskAwaitable<bool>.ConfiguredValueTaskAwaiter AwaiterOf(ValueTask<bool> wait) => wait.ConfigureAwait(false).GetAwaiter();

    /// <summary>Records a signal; the first one while a wait is parked completes it.</summary>
    private void Signal(int signal)
    {
        if (Interlocked.Or(ref _signals, signal) == Waiting)
        {
            // An event continues the writer on this (pool) thread; the timer and a cancellation hand it to the pool.
            _core.RunContinuationsAsynchronously = signal != Ready;
            _core.SetResult(default);
        }
    }
}
