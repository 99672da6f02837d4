using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Dynamo.Llm.Kv;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Components.KvTransfer;

/// <summary>
/// The receiving end of KV transfers (a decode worker): listens on TCP, and hands each payload a sender pushes to
/// the <see cref="KvTransferTicket"/> that expects its transfer id, or one part of it (a tensor-parallel sender's
/// rank, its own KV heads: the ticket assembles the parts) (README.md in this folder: the wire format and the rules).
/// Every connection is served on its own, so a slow or broken sender delays no other; a sender for an
/// unknown or expired id, a malformed header or a layout that disagrees with the data length is refused with a
/// reason, a connection that breaks or stalls mid-way fails its ticket, and the server keeps serving.
/// </summary>
public sealed partial class KvTransferServer : IAsyncDisposable
{
    /// <summary>The most a refused sender's data is read and dropped, waiting for it to close, before the connection is cut.</summary>
    private const int LingerBytes = 16 << 20;

    /// <summary>The largest array <see cref="ArrayPool{T}.Shared"/> keeps; larger payloads get a fresh array even with <see cref="KvTransferServerOptions.PoolBuffers"/>.</summary>
    private const int MaxPooledBytes = 1 << 30;

    private readonly Socket _listener;
    private readonly KvTransferServerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, KvTransferTicket> _tickets = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private Task _acceptLoop = Task.CompletedTask;
    private long _nextConnection;
    private int _open;
    private int _inProgress;
    private int _disposed;
    private long _received;
    private long _bytes;
    private long _refused;
    private long _failed;
    private long _lastTicks;
    private long _totalTicks;

    private KvTransferServer(Socket listener, string address, KvTransferServerOptions options, ILogger logger)
    {
        _listener = listener;
        Address = address;
        _options = options;
        _time = options.TimeProvider ?? TimeProvider.System;
        _logger = logger;
        LocalEndPoint = (IPEndPoint)listener.LocalEndPoint!;
    }

    /// <summary>What senders connect to: <c>tcp://HOST:PORT</c>, with the advertised host (see <see cref="KvTransferServerOptions.AdvertisedHost"/>).</summary>
    public string Address { get; }

    /// <summary>The address and port the server listens on.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Transfers whose payload was delivered to their ticket; a transfer in parts counts each part.</summary>
    public long TransfersReceived => Interlocked.Read(ref _received);

    /// <summary>Data bytes of the transfers received.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytes);

    /// <summary>
    /// Connections refused before any data: unknown, expired or taken transfer id, malformed header or layout,
    /// wrong magic, no header within the idle timeout, too many connections.
    /// </summary>
    public long TransfersRefused => Interlocked.Read(ref _refused);

    /// <summary>Transfers that started and did not finish: the connection broke or stalled, or the ticket ended meanwhile.</summary>
    public long TransfersFailed => Interlocked.Read(ref _failed);

    /// <summary>The receive time of the last transfer received: from its header accepted to its last byte in.</summary>
    public TimeSpan LastTransferTime => TimeSpan.FromTicks(Interlocked.Read(ref _lastTicks));

    /// <summary>The receive times of all the transfers received, summed.</summary>
    public TimeSpan TotalTransferTime => TimeSpan.FromTicks(Interlocked.Read(ref _totalTicks));

    /// <summary>Transfers being received now (claimed by a sender, data not all in).</summary>
    public int TransfersInProgress => Volatile.Read(ref _inProgress);

    /// <summary>Tickets waiting for their payload now.</summary>
    public int PendingTransfers => _tickets.Count;

    /// <summary>
    /// Binds, listens and starts accepting. <see cref="ArgumentException"/> for bad options,
    /// <see cref="SocketException"/> when the address cannot be bound (the port taken).
    /// </summary>
    public static KvTransferServer Start(KvTransferServerOptions? options = null, ILogger? logger = null)
    {
        options = (options ?? KvTransferServerOptions.Default).Validate();
        logger ??= NullLogger.Instance;
        var bind = IPAddress.Parse(options.BindAddress);
        var listener = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (bind.Equals(IPAddress.IPv6Any))
            {
                listener.DualMode = true;
            }

            // Accepted sockets inherit the buffer sizes; the receive window is negotiated from them at the handshake.
            Configure(listener, options.SocketBufferBytes);
            listener.Bind(new IPEndPoint(bind, options.Port));
            listener.Listen(Math.Min(options.MaxConnections, 512));
            int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
            string host = options.AdvertisedHost ?? AdvertisedHostFor(bind, options.AdvertiseToward, logger);
            var server = new KvTransferServer(listener, KvTransferWire.FormatAddress(host, port), options, logger);
            server._acceptLoop = Task.Run(() => server.AcceptLoopAsync(server._stop.Token), CancellationToken.None);
            Log.Listening(server._logger, server.LocalEndPoint, server.Address);
            return server;
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Registers a transfer a sender will push. <paramref name="timeout"/> (the options' <see cref="KvTransferServerOptions.ExpectTimeout"/>
    /// when null; <see cref="Timeout.InfiniteTimeSpan"/> for none) bounds the wait for the whole payload.
    /// <see cref="InvalidOperationException"/> when <paramref name="transferId"/> is already expected,
    /// <see cref="ArgumentException"/> when it is empty or over 256 UTF-8 bytes.
    /// </summary>
    public KvTransferTicket Expect(string transferId, TimeSpan? timeout = null)
    {
        KvTransferWire.TransferIdByteCount(transferId);
        TimeSpan wait = timeout ?? _options.ExpectTimeout;
        if (wait <= TimeSpan.Zero && wait != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), wait, "the timeout must be positive or infinite");
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var ticket = new KvTransferTicket(this, transferId, _options.PoolBuffers);
        if (!_tickets.TryAdd(transferId, ticket))
        {
            throw new InvalidOperationException($"KV transfer '{transferId}' is already expected");
        }

        ticket.StartExpiry(wait, _time);
        if (Volatile.Read(ref _disposed) != 0)
        {
            ticket.Stop();
        }

        return ticket;
    }

    /// <summary>
    /// The local address of the interface this host's routes use to reach <paramref name="host"/> (a UDP socket
    /// connected there: no packet is sent); null when there is no route or the name does not resolve.
    /// </summary>
    public static IPAddress? LocalAddressToward(string host, int port)
    {
        ArgumentNullException.ThrowIfNull(host);
        try
        {
            using var probe = new Socket(SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(host, port);
            IPAddress? local = (probe.LocalEndPoint as IPEndPoint)?.Address;
            return local is null || local.Equals(IPAddress.Any) || local.Equals(IPAddress.IPv6Any) ? null
                : local.IsIPv4MappedToIPv6 ? local.MapToIPv4() : local;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>Stops listening, cuts every connection, fails the tickets still waiting, and waits for the connections to end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        foreach (KvTransferTicket ticket in _tickets.Values)
        {
            ticket.Stop();
        }

        await _acceptLoop.ConfigureAwait(false);
        await Task.WhenAll(_connections.Values).ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>Forgets an ended ticket: its id is unknown from now on.</summary>
    internal void Forget(KvTransferTicket ticket) => _tickets.TryRemove(new KeyValuePair<string, KvTransferTicket>(ticket.TransferId, ticket));

    private static string AdvertisedHostFor(IPAddress bind, string? toward, ILogger logger)
    {
        if (!bind.Equals(IPAddress.Any) && !bind.Equals(IPAddress.IPv6Any))
        {
            return bind.ToString();
        }

        if (toward is null)
        {
            return IPAddress.Loopback.ToString();
        }

        if (ProbeTarget(toward) is var (host, port) && LocalAddressToward(host, port) is { } local)
        {
            if (!IPAddress.IsLoopback(local))
            {
                return local.ToString();
            }

            // etcd runs on this very host (the guides' head node): loopback reaches it, but not the other nodes.
            if (NetworkAddress() is { } network)
            {
                Log.LoopbackToward(logger, toward, network.ToString());
                return network.ToString();
            }
        }

        Log.NoRouteToward(logger, toward);
        return IPAddress.Loopback.ToString();
    }

    /// <summary>
    /// This host's address on its network: the one its default route leaves from (no packet is sent), else the first
    /// IPv4 address of an interface that is up and not loopback; null when there is none.
    /// </summary>
    private static IPAddress? NetworkAddress()
    {
        if (LocalAddressToward("192.0.2.1", 9) is { } routed && !IPAddress.IsLoopback(routed))
        {
            return routed;
        }

        return System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == System.Net.NetworkInformation.OperationalStatus.Up
                && n.NetworkInterfaceType != System.Net.NetworkInformation.NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
    }

    /// <summary>The host and port of <c>scheme://host:port</c> or <c>host:port</c> (the first of a comma-separated list); null when unreadable.</summary>
    private static (string Host, int Port)? ProbeTarget(string endpoint)
    {
        string first = endpoint.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        if (!Uri.TryCreate(first.Contains("://", StringComparison.Ordinal) ? first : "probe://" + first, UriKind.Absolute, out Uri? uri) || uri.IdnHost.Length == 0)
        {
            return null;
        }

        // No packet goes out: any port routes the same way.
        return (uri.IdnHost.Trim('[', ']'), uri.Port is > 0 and < 65536 ? uri.Port : 9);
    }

    private static void Configure(Socket socket, int bufferBytes)
    {
        if (bufferBytes > 0)
        {
            socket.SendBufferSize = bufferBytes;
            socket.ReceiveBufferSize = bufferBytes;
        }
    }

    private async Task AcceptLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // A failed accept (the connection reset before it was taken) costs that connection only.
                Log.AcceptFailed(_logger, e.SocketErrorCode, e);
                if (e.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                {
                    // Out of descriptors or memory: let the connections being served end rather than spin.
                    try
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(100), _time, cancellationToken).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }

                continue;
            }

            if (Interlocked.Increment(ref _open) > _options.MaxConnections)
            {
                Interlocked.Decrement(ref _open);
                Interlocked.Increment(ref _refused);
                Log.Refused(_logger, PeerOf(socket), $"more than {_options.MaxConnections} connections at once");
                socket.Dispose();
                continue;
            }

            long id = Interlocked.Increment(ref _nextConnection);
            Task served = Task.Run(async () =>
            {
                try
                {
                    await ServeConnectionAsync(socket, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    Interlocked.Decrement(ref _open);
                    _connections.TryRemove(id, out _);
                }
            }, CancellationToken.None);
            _connections[id] = served;
            if (served.IsCompleted)
            {
                // It ended before it was added: its own removal came first.
                _connections.TryRemove(id, out _);
            }
        }
    }

    private static string PeerOf(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint?.ToString() ?? "an unknown peer";
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return "an unknown peer";
        }
    }

    private async Task ServeConnectionAsync(Socket socket, CancellationToken stop)
    {
        string peer = PeerOf(socket);
        using CancellationTokenSource idle = new(Timeout.InfiniteTimeSpan, _time);
        using CancellationTokenSource connection = CancellationTokenSource.CreateLinkedTokenSource(stop, idle.Token);
        KvTransferTicket? claimed = null;
        try
        {
            socket.NoDelay = true;
            idle.CancelAfter(_options.IdleTimeout);
            (string Id, KvTransferLayout Layout, long Length)? request = await ReadRequestAsync(socket, peer, idle, connection.Token).ConfigureAwait(false);
            if (request is not var (id, layout, length))
            {
                return;
            }

            if (!_tickets.TryGetValue(id, out KvTransferTicket? ticket))
            {
                await RefuseAsync(socket, peer, $"unknown transfer id '{id}' (not expected here, expired, cancelled or already received)", idle, connection.Token).ConfigureAwait(false);
                return;
            }

            if (!ticket.TryClaim(peer, layout, out string taken))
            {
                await RefuseAsync(socket, peer, taken, idle, connection.Token).ConfigureAwait(false);
                return;
            }

            claimed = ticket;
            await ReceiveAsync(socket, peer, ticket, layout, length, idle, stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (claimed is null && stop.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (claimed is null && idle.IsCancellationRequested)
        {
            Interlocked.Increment(ref _refused);
            Log.Refused(_logger, peer, $"no complete header within {_options.IdleTimeout}");
        }
        catch (Exception e) when (claimed is null && e is SocketException or ObjectDisposedException)
        {
            Interlocked.Increment(ref _refused);
            Log.Refused(_logger, peer, $"the connection failed before a transfer started ({e.Message})");
        }
        catch (Exception e)
        {
            // Anything else (out of memory for the data, a bug) costs this connection only, and fails its ticket.
            if (claimed is null)
            {
                Interlocked.Increment(ref _refused);
            }
            else
            {
                Interlocked.Increment(ref _failed);
                claimed.Fail(new KvTransferException(KvTransferError.Broken, $"KV transfer '{claimed.TransferId}' from {peer} failed: {e.Message}", e));
            }

            Log.ConnectionFailed(_logger, peer, e);
        }
        finally
        {
            socket.Dispose();
        }
    }

    /// <summary>Reads and checks the header; null once the connection was refused (answered and counted).</summary>
    private async Task<(string Id, KvTransferLayout Layout, long Length)?> ReadRequestAsync(Socket socket, string peer, CancellationTokenSource idle, CancellationToken cancellationToken)
    {
        byte[] fixedPart = new byte[KvTransferWire.HeaderSize];
        int read = await KvTransferWire.ReceiveExactlyAsync(socket, fixedPart, cancellationToken).ConfigureAwait(false);
        if (read < fixedPart.Length)
        {
            Interlocked.Increment(ref _refused);
            if (read == 0)
            {
                // A bare connect (a port probe, a health check) is no one's mistake.
                Log.ClosedEmpty(_logger, peer);
            }
            else
            {
                Log.Refused(_logger, peer, $"the connection closed after {read} of the header's {KvTransferWire.HeaderSize} bytes");
            }

            return null;
        }

        if (!KvTransferWire.TryReadHeader(fixedPart, out KvTransferWire.Header header, out string? malformed))
        {
            if (malformed is null)
            {
                // Not this protocol: no reply, the connection is just closed.
                Interlocked.Increment(ref _refused);
                Log.Refused(_logger, peer, $"not a KV transfer (first bytes {Convert.ToHexString(fixedPart, 0, 4)})");
            }
            else
            {
                await RefuseAsync(socket, peer, malformed, idle, cancellationToken).ConfigureAwait(false);
            }

            return null;
        }

        byte[] text = ArrayPool<byte>.Shared.Rent(header.TransferIdLength + header.LayoutLength);
        try
        {
            Memory<byte> both = text.AsMemory(0, header.TransferIdLength + header.LayoutLength);
            read = await KvTransferWire.ReceiveExactlyAsync(socket, both, cancellationToken).ConfigureAwait(false);
            if (read < both.Length)
            {
                Interlocked.Increment(ref _refused);
                Log.Refused(_logger, peer, $"the connection closed inside the header ({read} of {both.Length} bytes of id and layout)");
                return null;
            }

            string id;
            KvTransferLayout layout;
            try
            {
                id = KvTransferWire.DecodeText(both.Span[..header.TransferIdLength]);
                layout = KvTransferLayout.FromJson(KvTransferWire.DecodeText(both.Span[header.TransferIdLength..]));
            }
            catch (Exception e) when (e is DecoderFallbackException or JsonException)
            {
                await RefuseAsync(socket, peer, $"a malformed transfer id or layout: {e.Message}", idle, cancellationToken).ConfigureAwait(false);
                return null;
            }

            string? problem = layout.PartProblem() is { } part ? $"transfer '{id}': {part}"
                : header.DataLength != layout.ByteCount
                ? $"transfer '{id}': the layout describes {layout.ByteCount} bytes but the header announces {header.DataLength}"
                : header.DataLength > _options.MaxPayloadBytes
                    ? $"transfer '{id}': {header.DataLength} bytes is over this receiver's limit of {_options.MaxPayloadBytes}"
                    : layout.Whole().ByteCount > _options.MaxPayloadBytes
                        ? $"transfer '{id}': the whole of this part is {layout.Whole().ByteCount} bytes, over this receiver's limit of {_options.MaxPayloadBytes}"
                        : null;
            if (problem is not null)
            {
                await RefuseAsync(socket, peer, problem, idle, cancellationToken).ConfigureAwait(false);
                return null;
            }

            return (id, layout, header.DataLength);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(text);
        }
    }

    /// <summary>Reads the claimed transfer's data into its array (fresh, or pooled), delivers it to the ticket, and replies.</summary>
    private async Task ReceiveAsync(Socket socket, string peer, KvTransferTicket ticket, KvTransferLayout layout, long length, CancellationTokenSource idle, CancellationToken stop)
    {
        using CancellationTokenSource transfer = CancellationTokenSource.CreateLinkedTokenSource(stop, idle.Token, ticket.AbortToken);
        long start = _time.GetTimestamp();
        long received = 0;
        string? failure = null;
        KvTransferError error = KvTransferError.Broken;
        bool pooled = _options.PoolBuffers && length is > 0 and <= MaxPooledBytes;
        byte[] data = length == 0 ? [] : pooled ? ArrayPool<byte>.Shared.Rent((int)length) : GC.AllocateUninitializedArray<byte>(checked((int)length));
        byte[]? rented = pooled ? data : null;
        idle.CancelAfter(_options.IdleTimeout);
        Interlocked.Increment(ref _inProgress);
        try
        {
            try
            {
                while (received < length)
                {
                    int n = await socket.ReceiveAsync(data.AsMemory((int)received), SocketFlags.None, transfer.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        failure = "the sender closed the connection";
                        break;
                    }

                    received += n;
                    idle.CancelAfter(_options.IdleTimeout);
                }
            }
            catch (OperationCanceledException) when (ticket.AbortToken.IsCancellationRequested || stop.IsCancellationRequested)
            {
                // The ticket ended (disposed, expired, the server stopping) and says so itself; the sender learns why.
                Interlocked.Increment(ref _failed);
                Log.Abandoned(_logger, ticket.TransferId, peer, received, length);
                string why = stop.IsCancellationRequested ? "the receiver is stopping" : "it was cancelled or expired on the receiver";
                await ReplyRefusedAndLingerAsync(socket, $"transfer '{ticket.TransferId}' given up after {received} of {length} bytes: {why}", idle, stop).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (idle.IsCancellationRequested)
            {
                failure = $"no data for {_options.IdleTimeout}";
                error = KvTransferError.TimedOut;
            }
            catch (SocketException e)
            {
                failure = $"the connection failed ({e.SocketErrorCode}: {e.Message})";
            }

            if (failure is not null)
            {
                Interlocked.Increment(ref _failed);
                string reason = $"{failure} after {received} of {length} bytes";
                Log.Failed(_logger, ticket.TransferId, peer, reason);
                ticket.Fail(new KvTransferException(error, $"KV transfer '{ticket.TransferId}' from {peer} failed: {reason}"));
                await TryReplyAsync(socket, KvTransferReplyStatus.Refused, $"transfer '{ticket.TransferId}' failed on the receiver: {reason}").ConfigureAwait(false);
                return;
            }

            TimeSpan elapsed = _time.GetElapsedTime(start);
            byte[]? handed = rented;

            // The ticket owns the buffer from here, delivered or not (it gives a pooled one back itself).
            rented = null;
            if (!ticket.TryComplete(new KvTransferPayload(layout, data.AsMemory(0, (int)length)), handed))
            {
                Interlocked.Increment(ref _failed);
                Log.Abandoned(_logger, ticket.TransferId, peer, received, length);
                await TryReplyAsync(socket, KvTransferReplyStatus.Refused, $"transfer '{ticket.TransferId}' ended on the receiver before its data was in (cancelled or expired)").ConfigureAwait(false);
                return;
            }

            Interlocked.Increment(ref _received);
            Interlocked.Add(ref _bytes, length);
            Interlocked.Exchange(ref _lastTicks, elapsed.Ticks);
            Interlocked.Add(ref _totalTicks, elapsed.Ticks);
            Log.Received(_logger, ticket.TransferId, peer, length, elapsed.TotalMilliseconds);
            await TryReplyAsync(socket, KvTransferReplyStatus.Received, "").ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _inProgress);
            if (rented is not null)
            {
                // Not delivered: the buffer goes straight back.
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Counts and logs a refusal, replies with it, then reads (and drops) what the sender already pushed until it closes.</summary>
    private Task RefuseAsync(Socket socket, string peer, string reason, CancellationTokenSource idle, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _refused);
        Log.Refused(_logger, peer, reason);
        return ReplyRefusedAndLingerAsync(socket, reason, idle, cancellationToken);
    }

    /// <summary>
    /// Replies Refused, then reads (and drops) what the sender already pushed until it closes: it stops sending once
    /// it reads the reply, and a close with its data unread would reset the connection, maybe before the reply is
    /// read. Bounded by <see cref="LingerBytes"/> and the idle timeout.
    /// </summary>
    private async Task ReplyRefusedAndLingerAsync(Socket socket, string reason, CancellationTokenSource idle, CancellationToken cancellationToken)
    {
        if (!await TryReplyAsync(socket, KvTransferReplyStatus.Refused, reason).ConfigureAwait(false))
        {
            return;
        }

        byte[] sink = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            long drained = 0;
            idle.CancelAfter(_options.IdleTimeout);
            using CancellationTokenSource linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
            while (drained < LingerBytes)
            {
                int n = await socket.ReceiveAsync(sink, SocketFlags.None, linger.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    return;
                }

                drained += n;
                idle.CancelAfter(_options.IdleTimeout);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(sink);
        }
    }

    /// <summary>
    /// Sends the connection's one reply and closes the sending side; false when the sender is already gone. Not
    /// cancellable: a reply of at most about 1 KB is all this side ever sends, so the socket always takes it at once.
    /// </summary>
    private static async Task<bool> TryReplyAsync(Socket socket, KvTransferReplyStatus status, string message)
    {
        try
        {
            await KvTransferWire.SendAllAsync(socket, KvTransferWire.EncodeReply(status, message), CancellationToken.None).ConfigureAwait(false);
            socket.Shutdown(SocketShutdown.Send);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "KV transfer server listening on {EndPoint}, advertised as {Address}")]
        public static partial void Listening(ILogger logger, IPEndPoint endPoint, string address);

        [LoggerMessage(EventId = 7002, Level = LogLevel.Debug, Message = "KV transfer {TransferId} from {Peer}: {Bytes} bytes in {Milliseconds:F1} ms")]
        public static partial void Received(ILogger logger, string transferId, string peer, long bytes, double milliseconds);

        [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "KV transfer from {Peer} refused: {Reason}")]
        public static partial void Refused(ILogger logger, string peer, string reason);

        [LoggerMessage(EventId = 7004, Level = LogLevel.Warning, Message = "KV transfer {TransferId} from {Peer} failed: {Reason}")]
        public static partial void Failed(ILogger logger, string transferId, string peer, string reason);

        [LoggerMessage(EventId = 7005, Level = LogLevel.Information, Message = "KV transfer {TransferId} from {Peer} abandoned after {Received} of {Length} bytes: its ticket ended (cancelled, expired or the server stopping)")]
        public static partial void Abandoned(ILogger logger, string transferId, string peer, long received, long length);

        [LoggerMessage(EventId = 7006, Level = LogLevel.Warning, Message = "KV transfer server: accepting a connection failed ({Error})")]
        public static partial void AcceptFailed(ILogger logger, SocketError error, Exception exception);

        [LoggerMessage(EventId = 7007, Level = LogLevel.Error, Message = "KV transfer connection from {Peer} failed")]
        public static partial void ConnectionFailed(ILogger logger, string peer, Exception exception);

        [LoggerMessage(EventId = 7008, Level = LogLevel.Warning, Message = "KV transfer server: no local address routes toward '{Toward}'; advertising 127.0.0.1 (set the advertised host)")]
        public static partial void NoRouteToward(ILogger logger, string toward);

        [LoggerMessage(EventId = 7010, Level = LogLevel.Information, Message = "KV transfer server: '{Toward}' is on this host; advertising this host's network address {Address} (set the advertised host to choose another)")]
        public static partial void LoopbackToward(ILogger logger, string toward, string address);

        [LoggerMessage(EventId = 7009, Level = LogLevel.Debug, Message = "KV transfer connection from {Peer} closed without sending anything")]
        public static partial void ClosedEmpty(ILogger logger, string peer);
    }
}
