using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Dynamo.Llm.Kv;

namespace Dynamo.Components.KvTransfer;

/// <summary>
/// The sending end of KV transfers (a prefill worker): pushes one payload to the <see cref="KvTransferServer"/> at an
/// address, on a connection of its own, and returns once the receiver acknowledged the whole payload. Stateless
/// and safe to share: each send opens and closes its own connection.
/// </summary>
public sealed class KvTransferClient : IKvTransferSender
{
    /// <summary>Bytes handed to the socket per call, each within the idle timeout.</summary>
    private const int ChunkBytes = 4 << 20;

    private readonly KvTransferClientOptions _options;
    private readonly TimeProvider _time;

    /// <summary>A client with <paramref name="options"/> (<see cref="KvTransferClientOptions.Default"/> when null).</summary>
    public KvTransferClient(KvTransferClientOptions? options = null)
    {
        _options = (options ?? KvTransferClientOptions.Default).Validate();
        _time = _options.TimeProvider ?? TimeProvider.System;
    }

    /// <summary>
    /// Connects to <paramref name="address"/> (<c>tcp://HOST:PORT</c>, a server's <see cref="KvTransferServer.Address"/>),
    /// sends <paramref name="payload"/> as transfer <paramref name="transferId"/>, and waits for the receiver's
    /// acknowledgement. Throws <see cref="KvTransferException"/> naming the address and the reason when the receiver
    /// refuses (its reason), cannot be reached, breaks the connection or stalls past the idle timeout;
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires (the connection is
    /// closed, so the receiver's ticket fails); <see cref="ArgumentException"/> for a bad address or id, or a payload
    /// whose data length is not its layout's <see cref="KvTransferLayout.ByteCount"/>.
    /// </summary>
    /// <inheritdoc/>
    async Task<TimeSpan> IKvTransferSender.PushAsync(string address, string transferId, KvTransferPayload payload, CancellationToken cancellationToken) =>
        (await SendAsync(address, transferId, payload, cancellationToken).ConfigureAwait(false)).Elapsed;

    public async Task<KvTransferSendResult> SendAsync(string address, string transferId, KvTransferPayload payload, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(payload);
        (string host, int port) = KvTransferWire.ParseAddress(address);
        if (payload.Data.Length != payload.Layout.ByteCount)
        {
            throw new ArgumentException($"the payload has {payload.Data.Length} bytes of data but its layout describes {payload.Layout.ByteCount}", nameof(payload));
        }

        byte[] header = KvTransferWire.EncodeHeader(transferId, payload.Layout.ToJson(), payload.Data.Length);
        long start = _time.GetTimestamp();
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (_options.SocketBufferBytes > 0)
        {
            socket.SendBufferSize = _options.SocketBufferBytes;
            socket.ReceiveBufferSize = _options.SocketBufferBytes;
        }

        using CancellationTokenSource timer = new(Timeout.InfiniteTimeSpan, _time);
        using CancellationTokenSource linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        string what = $"KV transfer '{transferId}' to {address}";
        ReadOnlyMemory<byte> data = payload.Data;
        long sent = 0;
        Task<(KvTransferReplyStatus Status, string Message)>? reply = null;
        try
        {
            timer.CancelAfter(_options.ConnectTimeout);
            try
            {
                await socket.ConnectAsync(host, port, linked.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new KvTransferException(KvTransferError.Unreachable, $"{what}: cannot connect ({e.SocketErrorCode}: {e.Message})", e);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new KvTransferException(KvTransferError.Unreachable, $"{what}: no connection within {_options.ConnectTimeout}");
            }

            // The receiver answers once per connection: Received when all the data is in, or Refused (with why) as soon
            // as it gives up, maybe while the data is still going out; so its reply is read while sending.
            timer.CancelAfter(_options.IdleTimeout);
            reply = ReadReplyAsync(socket, what, linked.Token);
            SocketException? sendFailure = null;
            try
            {
                sent = await SendHeaderAsync(socket, header, data, linked.Token).ConfigureAwait(false);
                timer.CancelAfter(_options.IdleTimeout);
                while (sent < data.Length && !reply.IsCompleted)
                {
                    int n = (int)Math.Min(ChunkBytes, data.Length - sent);
                    await KvTransferWire.SendAllAsync(socket, data.Slice((int)sent, n), linked.Token).ConfigureAwait(false);
                    sent += n;
                    timer.CancelAfter(_options.IdleTimeout);
                }
            }
            catch (SocketException e)
            {
                // The receiver closed the connection; its reply, if it sent one, says why.
                sendFailure = e;
            }

            (KvTransferReplyStatus status, string message) = await AwaitReplyAsync(reply, sendFailure, what, sent, data.Length).ConfigureAwait(false);
            if (status == KvTransferReplyStatus.Refused)
            {
                throw new KvTransferException(KvTransferError.Refused, $"{what} refused: {message}");
            }

            if (sent < data.Length || sendFailure is not null)
            {
                throw new KvTransferException(KvTransferError.Protocol, $"{what}: the receiver acknowledged after {sent} of {data.Length} bytes");
            }

            return new KvTransferSendResult(data.Length, _time.GetElapsedTime(start));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && timer.IsCancellationRequested)
        {
            string waiting = sent < data.Length ? "sending the data" : "waiting for the acknowledgement";
            throw new KvTransferException(KvTransferError.TimedOut, $"{what}: no progress for {_options.IdleTimeout} while {waiting} ({sent} of {data.Length} bytes sent)");
        }
        finally
        {
            // A reply never awaited (the caller cancelled) ends with the socket; its fault is of no interest.
            _ = reply?.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>The receiver's reply; when there is none, a <see cref="KvTransferError.Broken"/> naming the send's failure if there was one.</summary>
    private static async Task<(KvTransferReplyStatus Status, string Message)> AwaitReplyAsync(
        Task<(KvTransferReplyStatus Status, string Message)> reply, SocketException? sendFailure, string what, long sent, long length)
    {
        try
        {
            return await reply.ConfigureAwait(false);
        }
        catch (Exception e) when (sendFailure is not null && e is SocketException or KvTransferException { Error: KvTransferError.Broken })
        {
            throw new KvTransferException(KvTransferError.Broken, $"{what}: the connection broke after {sent} of {length} bytes ({sendFailure.SocketErrorCode}: {sendFailure.Message})", sendFailure);
        }
        catch (SocketException e)
        {
            throw new KvTransferException(KvTransferError.Broken, $"{what}: the connection broke after {sent} of {length} bytes ({e.SocketErrorCode}: {e.Message})", e);
        }
    }

    /// <summary>
    /// Sends the header and, in the same call, the data's first chunk (a separate small write ahead of the data
    /// measurably slows a loopback stream: docs/benchmarks.md, "KV transfer"); returns how many data bytes went out.
    /// The gather send takes no token: cancellation closes the socket under it.
    /// </summary>
    private static async Task<long> SendHeaderAsync(Socket socket, byte[] header, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (data.IsEmpty || !MemoryMarshal.TryGetArray(data, out ArraySegment<byte> array))
        {
            await KvTransferWire.SendAllAsync(socket, header, cancellationToken).ConfigureAwait(false);
            return 0;
        }

        int first = Math.Min(ChunkBytes, array.Count);
        int written;
        using (cancellationToken.UnsafeRegister(static s => ((Socket)s!).Dispose(), socket))
        {
            try
            {
                written = await socket.SendAsync([header, array[..first]], SocketFlags.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
        }

        if (written < header.Length)
        {
            await KvTransferWire.SendAllAsync(socket, header.AsMemory(written), cancellationToken).ConfigureAwait(false);
            written = header.Length;
        }

        return written - header.Length;
    }

    private static async Task<(KvTransferReplyStatus Status, string Message)> ReadReplyAsync(Socket socket, string what, CancellationToken cancellationToken)
    {
        byte[] fixedPart = new byte[KvTransferWire.ReplySize];
        int read = await KvTransferWire.ReceiveExactlyAsync(socket, fixedPart, cancellationToken).ConfigureAwait(false);
        if (read < fixedPart.Length)
        {
            throw new KvTransferException(KvTransferError.Broken, $"{what}: the receiver closed the connection without a reply ({read} of {fixedPart.Length} bytes)");
        }

        if (!KvTransferWire.TryReadReply(fixedPart, out KvTransferReplyStatus status, out int length, out string problem))
        {
            throw new KvTransferException(KvTransferError.Protocol, $"{what}: {problem}");
        }

        byte[] text = new byte[length];
        if (await KvTransferWire.ReceiveExactlyAsync(socket, text, cancellationToken).ConfigureAwait(false) < length)
        {
            throw new KvTransferException(KvTransferError.Broken, $"{what}: the receiver closed the connection inside its reply");
        }

        return (status, Encoding.UTF8.GetString(text));
    }
}
