using System.Diagnostics;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// Follows one NATS connection for the request plane: whether it is open, since when it is down, how many
/// times it came back (a stream compares that count to learn that its own connection reconnected), and a bounded
/// wait for it to open. The state is the connection's own <see cref="NatsConnection.ConnectionState"/>; the
/// events (delivered a moment later, in order) only stamp the times and wake the waiters.
/// </summary>
internal sealed class NatsConnectionWatch : IDisposable
{
    private static readonly TimeSpan Recheck = TimeSpan.FromMilliseconds(100);

    private readonly NatsConnection _connection;
    private readonly Lock _lock = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private DateTimeOffset? _downSince;
    private long _downSinceTimestamp;
    private bool _lost;
    private long _reopened;

    public NatsConnectionWatch(NatsConnection connection)
    {
        _connection = connection;
        _connection.ConnectionDisconnected += OnDisconnectedAsync;
        _connection.ConnectionOpened += OnOpenedAsync;
    }

    /// <summary>Raised (on the connection's event loop) each time the connection opens again after a loss.</summary>
    public event Action? Reopened;

    /// <summary>Open now, or never connected yet (the first use connects): requests may go out.</summary>
    public bool CanSend => _connection.ConnectionState is NatsConnectionState.Open or NatsConnectionState.Closed;

    /// <summary>Open now.</summary>
    public bool IsOpen => _connection.ConnectionState == NatsConnectionState.Open;

    /// <summary>How long the connection has been down, from the loss's event (zero while open, or before the event).</summary>
    public TimeSpan DownFor
    {
        get
        {
            long since = Interlocked.Read(ref _downSinceTimestamp);
            return since == 0 || IsOpen ? TimeSpan.Zero : Stopwatch.GetElapsedTime(since);
        }
    }

    /// <summary>How many times the connection opened again after a loss.</summary>
    public long Reopenings => Interlocked.Read(ref _reopened);

    /// <summary>The connection's state as a health record.</summary>
    public RequestPlaneHealth Health
    {
        get
        {
            NatsConnectionState state = _connection.ConnectionState;
            if (state is NatsConnectionState.Open or NatsConnectionState.Closed)
            {
                return RequestPlaneHealth.Connected;
            }

            DateTimeOffset? since;
            lock (_lock)
            {
                since = _downSince;
            }

            string what = state switch
            {
                NatsConnectionState.Connecting => "connecting",
                NatsConnectionState.Failed => "failed, not reconnecting",
                _ => "connection lost, reconnecting",
            };
            string when = since is { } s ? $" since {s:O}" : "";
            return new RequestPlaneHealth { IsConnected = false, DisconnectedSince = since, Reason = $"NATS at {NatsPlaneOptions.Redacted(_connection.Opts.Url)}: {what}{when}" };
        }
    }

    /// <summary>
    /// Waits until requests may go out: true at once when they may, true when the connection opens within
    /// <paramref name="bound"/>, false when it does not.
    /// </summary>
    public async ValueTask<bool> WaitUntilCanSendAsync(TimeSpan bound, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        while (!CanSend)
        {
            TimeSpan left = bound - Stopwatch.GetElapsedTime(start);
            if (left <= TimeSpan.Zero)
            {
                return false;
            }

            Task changed;
            lock (_lock)
            {
                changed = _changed.Task;
            }

            // The event follows the state by a moment: look again at least every Recheck.
            try
            {
                await changed.WaitAsync(left < Recheck ? left : Recheck, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }

        return true;
    }

    public void Dispose()
    {
        _connection.ConnectionDisconnected -= OnDisconnectedAsync;
        _connection.ConnectionOpened -= OnOpenedAsync;
    }

    private ValueTask OnDisconnectedAsync(object? sender, NatsEventArgs args)
    {
        lock (_lock)
        {
            if (_downSince is null)
            {
                _downSince = DateTimeOffset.UtcNow;
                Interlocked.Exchange(ref _downSinceTimestamp, Stopwatch.GetTimestamp());
            }

            _lost = true;
        }

        return default;
    }

    private ValueTask OnOpenedAsync(object? sender, NatsEventArgs args)
    {
        bool reopened;
        TaskCompletionSource changed;
        lock (_lock)
        {
            reopened = _lost;
            _lost = false;
            _downSince = null;
            Interlocked.Exchange(ref _downSinceTimestamp, 0);
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
        if (reopened)
        {
            Interlocked.Increment(ref _reopened);
            Reopened?.Invoke();
        }

        return default;
    }
}
