using System.Buffers;
using System.IO.Pipelines;

namespace Dynamo.Frontend.Http;

/// <summary>
/// The output of one HTTP/1.1 connection, between Kestrel and the socket (see <see cref="KestrelRejections"/>). It
/// passes every byte through until <see cref="Replace"/> arms it; from then on it drops what Kestrel writes (its
/// bodiless refusal, the last thing written on the connection) and sends the given answer in its place at the
/// next flush or completion.
/// </summary>
internal sealed class RejectionPipeWriter(PipeWriter inner) : PipeWriter
{
    private ArrayBufferWriter<byte>? _dropped;
    private byte[]? _pending;
    private bool _leasedDropped;

    /// <summary>
    /// Drops whatever is written from now on and sends <paramref name="response"/> (a whole HTTP/1.1 response)
    /// instead. Kestrel calls this (through its bad-request event) on its own request-processing flow, before it
    /// writes its refusal and while nothing else writes to the connection.
    /// </summary>
    public void Replace(byte[] response)
    {
        _dropped ??= new ArrayBufferWriter<byte>(256);
        Volatile.Write(ref _pending, response);
    }

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        _leasedDropped = _dropped is not null;
        return _leasedDropped ? _dropped!.GetMemory(sizeHint) : inner.GetMemory(sizeHint);
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        _leasedDropped = _dropped is not null;
        return _leasedDropped ? _dropped!.GetSpan(sizeHint) : inner.GetSpan(sizeHint);
    }

    /// <summary>Commits to the socket, or (armed) forgets the bytes: the dropped buffer is reused from its start.</summary>
    public override void Advance(int bytes)
    {
        if (!_leasedDropped)
        {
            inner.Advance(bytes);
        }
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        SendPending();
        return inner.FlushAsync(cancellationToken);
    }

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null)
    {
        SendPending();
        inner.Complete(exception);
    }

    public override ValueTask CompleteAsync(Exception? exception = null)
    {
        SendPending();
        return inner.CompleteAsync(exception);
    }

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;

    private void SendPending()
    {
        if (Interlocked.Exchange(ref _pending, null) is { } response)
        {
            inner.Write(response);
        }
    }
}
