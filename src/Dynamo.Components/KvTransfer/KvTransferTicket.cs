using System.Buffers;
using Dynamo.Llm.Kv;

namespace Dynamo.Components.KvTransfer;

/// <summary>
/// A transfer a <see cref="KvTransferServer"/> expects (<see cref="KvTransferServer.Expect"/>). It ends exactly once:
/// received (<see cref="Received"/> completes with the payload), failed (the sender's connection broke or stalled:
/// <see cref="Received"/> faults with a <see cref="KvTransferException"/> naming the sender and the reason), expired
/// (<see cref="KvTransferError.TimedOut"/>), disposed (cancelled) or the server stopped
/// (<see cref="ObjectDisposedException"/>). From then on the server no longer knows its id: a sender for it is
/// refused. The first sender that names its id claims it; any other is refused.
/// </summary>
public sealed class KvTransferTicket : IDisposable
{
    private readonly KvTransferServer _server;
    private readonly TaskCompletionSource<KvTransferPayload> _received = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _gate = new();
    private ITimer? _expiry;
    private string? _sender;
    private byte[]? _rented;
    private bool _ended;

    internal KvTransferTicket(KvTransferServer server, string transferId)
    {
        _server = server;
        TransferId = transferId;
    }

    /// <summary>The transfer id senders name.</summary>
    public string TransferId { get; }

    /// <summary>
    /// Completes with the payload once a sender delivered all of it. Its data is a fresh array of exactly
    /// <see cref="KvTransferLayout.ByteCount"/> bytes that the caller owns; with
    /// <see cref="KvTransferServerOptions.PoolBuffers"/>, a slice of a pooled array that stays valid until this ticket
    /// is disposed.
    /// </summary>
    public Task<KvTransferPayload> Received => _received.Task;

    /// <summary>Cancelled when the ticket ends before its payload is in: a receive in progress stops.</summary>
    internal CancellationToken AbortToken => _abort.Token;

    /// <summary>
    /// Cancels the ticket unless its payload is already in: <see cref="Received"/> is cancelled, a receive in
    /// progress is cut off (its sender is told why), and a later sender is refused. Once the payload is in, only
    /// gives a pooled buffer back (<see cref="KvTransferServerOptions.PoolBuffers"/>).
    /// </summary>
    public void Dispose()
    {
        if (!End(t => t.TrySetCanceled(), abort: true, rented: null))
        {
            // Ended before: a payload in a pooled buffer (KvTransferServerOptions.PoolBuffers) gives it back now.
            byte[]? rented;
            lock (_gate)
            {
                rented = _rented;
                _rented = null;
            }

            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Starts the expiry timer (called once, by the server, after registering the ticket).</summary>
    internal void StartExpiry(TimeSpan timeout, TimeProvider time)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return;
        }

        ITimer timer = time.CreateTimer(static state => ((KvTransferTicket)state!).Expire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        lock (_gate)
        {
            if (_ended)
            {
                timer.Dispose();
                return;
            }

            _expiry = timer;
        }

        timer.Change(timeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Claims the ticket for the sender at <paramref name="peer"/>; false (with why) when it is taken or over.</summary>
    internal bool TryClaim(string peer, out string reason)
    {
        lock (_gate)
        {
            if (_ended)
            {
                reason = $"transfer id '{TransferId}' is no longer expected";
                return false;
            }

            if (_sender is not null)
            {
                reason = $"transfer id '{TransferId}' is already being sent by {_sender}";
                return false;
            }

            _sender = peer;
            reason = "";
            return true;
        }
    }

    /// <summary>
    /// Delivers the payload; false when the ticket ended first (disposed, expired). <paramref name="rented"/>, the
    /// pooled array under the payload's data if it is one, is the ticket's from then on: <see cref="Dispose"/> returns it.
    /// </summary>
    internal bool TryComplete(KvTransferPayload payload, byte[]? rented) => End(t => t.TrySetResult(payload), abort: false, rented);

    /// <summary>Fails the ticket with <paramref name="error"/>; no effect when it already ended.</summary>
    internal void Fail(Exception error) => End(t => t.TrySetException(error), abort: true, rented: null);

    /// <summary>The server stopped: fails the ticket with <see cref="ObjectDisposedException"/>.</summary>
    internal void Stop() => Fail(new ObjectDisposedException(nameof(KvTransferServer), $"the KV transfer server stopped before transfer '{TransferId}' arrived"));

    private void Expire()
    {
        string? sender;
        lock (_gate)
        {
            sender = _sender;
        }

        string during = sender is null ? "no sender connected" : $"{sender} was still sending";
        Fail(new KvTransferException(KvTransferError.TimedOut, $"KV transfer '{TransferId}' was not received in time ({during})"));
    }

    private bool End(Func<TaskCompletionSource<KvTransferPayload>, bool> outcome, bool abort, byte[]? rented)
    {
        ITimer? expiry;
        lock (_gate)
        {
            if (_ended)
            {
                return false;
            }

            _ended = true;
            _rented = rented;
            expiry = _expiry;
            _expiry = null;
        }

        expiry?.Dispose();
        _server.Forget(this);
        if (abort)
        {
            _abort.Cancel();
        }

        outcome(_received);
        return true;
    }
}
