using System.Buffers;
using Dynamo.Llm.Kv;

namespace Dynamo.Components.KvTransfer;

/// <summary>
/// A transfer a <see cref="KvTransferServer"/> expects (<see cref="KvTransferServer.Expect"/>). It ends exactly once:
/// received (<see cref="Received"/> completes with the payload), failed (the sender's connection broke or stalled:
/// <see cref="Received"/> faults with a <see cref="KvTransferException"/> naming the sender and the reason), expired
/// (<see cref="KvTransferError.TimedOut"/>), disposed (cancelled) or the server stopped
/// (<see cref="ObjectDisposedException"/>). From then on the server no longer knows its id: a sender for it is
/// refused. The first sender that names its id claims it; any other is refused (but see parts, below).
/// <para>
/// A transfer may come in parts (a tensor-parallel prefill worker: each rank pushes its own KV heads on its own
/// connection, <see cref="KvTransferLayout.Parts"/>): each part's sender claims its head range, in any order; a part
/// of another whole (layers, tokens, head size, dtype, model heads or part count unlike the first part's), one whose
/// heads overlap a part already claimed, one part too many, or a whole payload after a part are refused before their
/// data (the ticket untouched). Once the parts cover every head, they are assembled into the whole model's layout and
/// <see cref="Received"/> completes with it. The expiry covers all the parts: a part missing then fails the ticket
/// (<see cref="KvTransferError.TimedOut"/>, naming the heads that did not come), as does any part's broken connection.
/// </para>
/// </summary>
public sealed class KvTransferTicket : IDisposable
{
    private readonly KvTransferServer _server;
    private readonly TaskCompletionSource<KvTransferPayload> _received = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _gate = new();
    private readonly bool _poolBuffers;
    private readonly List<Claim> _claims = [];
    private readonly List<KvTransferPayload> _parts = [];
    private readonly List<byte[]> _partBuffers = [];
    private ITimer? _expiry;
    private byte[]? _rented;
    private bool _ended;
    private int _headsIn;
    private int _partsReceived;

    internal KvTransferTicket(KvTransferServer server, string transferId, bool poolBuffers = false)
    {
        _server = server;
        TransferId = transferId;
        _poolBuffers = poolBuffers;
    }

    /// <summary>A sender's claim: the heads its part carries (all of them for a whole payload).</summary>
    private readonly record struct Claim(string Peer, KvTransferLayout Layout)
    {
        public int End => Layout.FirstKvHead + Layout.KvHeads;

        public string Heads => Layout.KvHeads <= 1 ? $"KV head {Layout.FirstKvHead}" : $"KV heads {Layout.FirstKvHead}..{End - 1}";
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

    /// <summary>How many parts the payload came in (1 for a whole payload); 0 until <see cref="Received"/> completes.</summary>
    public int PartsReceived
    {
        get
        {
            lock (_gate)
            {
                return _received.Task.IsCompletedSuccessfully ? _partsReceived : 0;
            }
        }
    }

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

    /// <summary>
    /// Claims the ticket, or the heads of <paramref name="layout"/> when it is a part, for the sender at
    /// <paramref name="peer"/>; false (with why) when it is taken, over, or the part does not fit the others.
    /// </summary>
    internal bool TryClaim(string peer, KvTransferLayout layout, out string reason)
    {
        lock (_gate)
        {
            reason = _ended ? $"transfer id '{TransferId}' is no longer expected" : ClaimProblem(layout) ?? "";
            if (reason.Length > 0)
            {
                return false;
            }

            _claims.Add(new Claim(peer, layout));
            return true;
        }
    }

    private string? ClaimProblem(KvTransferLayout layout)
    {
        if (_claims.Count == 0)
        {
            return null;
        }

        Claim first = _claims[0];
        if (layout.IsWhole || first.Layout.IsWhole)
        {
            return $"transfer id '{TransferId}' is already being sent by {string.Join(", ", _claims.Select(c => c.Peer))}";
        }

        if (!layout.SameWholeAs(first.Layout))
        {
            return $"transfer '{TransferId}': this part ({layout.ToJson()}) is not of the same whole as the part {first.Peer} sends ({first.Layout.ToJson()})";
        }

        var mine = new Claim("", layout);
        foreach (Claim c in _claims)
        {
            if (mine.Layout.FirstKvHead < c.End && c.Layout.FirstKvHead < mine.End)
            {
                return $"transfer '{TransferId}': this part's {mine.Heads} overlap the {c.Heads} already sent by {c.Peer}";
            }
        }

        return _claims.Count >= layout.PartCount
            ? $"transfer '{TransferId}': all {layout.PartCount} parts are already being sent ({string.Join(", ", _claims.Select(c => $"{c.Heads} by {c.Peer}"))})"
            : null;
    }

    /// <summary>
    /// Delivers the payload, or one part of it (kept until the parts cover every head, then assembled into the whole);
    /// false when the ticket ended first (disposed, expired). <paramref name="rented"/>, the pooled array under the
    /// payload's data if it is one, is the ticket's from the call on, whatever it returns: it goes back to the pool when
    /// the ticket ends without it, once the parts are assembled, or at <see cref="Dispose"/>.
    /// </summary>
    internal bool TryComplete(KvTransferPayload payload, byte[]? rented)
    {
        KvTransferPayload whole;
        byte[]? wholeRented;
        lock (_gate)
        {
            if (_ended)
            {
                ReturnBuffer(rented);
                return false;
            }

            _partsReceived++;
            if (payload.Layout.IsWhole)
            {
                (whole, wholeRented) = (payload, rented);
            }
            else
            {
                _parts.Add(payload);
                if (rented is not null)
                {
                    _partBuffers.Add(rented);
                }

                _headsIn += payload.Layout.KvHeads;
                if (_headsIn < payload.Layout.TotalKvHeads)
                {
                    // The other parts are still to come: this one waits, its buffer the ticket's.
                    return true;
                }

                (whole, wholeRented) = AssembleParts();
            }
        }

        if (!End(t => t.TrySetResult(whole), abort: false, wholeRented))
        {
            ReturnBuffer(wholeRented);
            return false;
        }

        return true;
    }

    /// <summary>Every head is in: the whole model's layout from the parts (under the gate); their buffers go back.</summary>
    private (KvTransferPayload Whole, byte[]? Rented) AssembleParts()
    {
        KvTransferLayout layout = _parts[0].Layout.Whole();
        int length = checked((int)layout.ByteCount);
        byte[] data = _poolBuffers && length > 0 ? ArrayPool<byte>.Shared.Rent(length) : GC.AllocateUninitializedArray<byte>(length);
        KvTransferParts.Assemble(_parts, data.AsSpan(0, length));
        _parts.Clear();
        foreach (byte[] buffer in _partBuffers)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        _partBuffers.Clear();
        return (new KvTransferPayload(layout, data.AsMemory(0, length)), _poolBuffers && length > 0 ? data : null);
    }

    private static void ReturnBuffer(byte[]? rented)
    {
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Fails the ticket with <paramref name="error"/>; no effect when it already ended.</summary>
    internal void Fail(Exception error) => End(t => t.TrySetException(error), abort: true, rented: null);

    /// <summary>The server stopped: fails the ticket with <see cref="ObjectDisposedException"/>.</summary>
    internal void Stop() => Fail(new ObjectDisposedException(nameof(KvTransferServer), $"the KV transfer server stopped before transfer '{TransferId}' arrived"));

    private void Expire()
    {
        string during;
        lock (_gate)
        {
            if (_claims.Count == 0)
            {
                during = "no sender connected";
            }
            else if (_claims[0].Layout.IsWhole)
            {
                during = $"{_claims[0].Peer} was still sending";
            }
            else
            {
                KvTransferLayout first = _claims[0].Layout;
                var held = new bool[first.TotalKvHeads];
                foreach (KvTransferPayload part in _parts)
                {
                    held.AsSpan(part.Layout.FirstKvHead, part.Layout.KvHeads).Fill(true);
                }

                string missing = string.Join(", ", Enumerable.Range(0, held.Length).Where(h => !held[h]));
                during = $"{_parts.Count} of {first.PartCount} parts in; KV heads {missing} of {first.TotalKvHeads} missing"
                    + $" ({string.Join(", ", _claims.Select(c => $"{c.Heads} claimed by {c.Peer}"))})";
            }
        }

        Fail(new KvTransferException(KvTransferError.TimedOut, $"KV transfer '{TransferId}' was not received in time ({during})"));
    }

    private bool End(Func<TaskCompletionSource<KvTransferPayload>, bool> outcome, bool abort, byte[]? rented)
    {
        ITimer? expiry;
        byte[][] parts;
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
            parts = [.. _partBuffers];
            _partBuffers.Clear();
            _parts.Clear();
        }

        foreach (byte[] buffer in parts)
        {
            ArrayPool<byte>.Shared.Return(buffer);
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
