using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Dynamo.Components.KvTransfer;

/// <summary>
/// The wire format of a KV transfer (README.md in this folder): the sender's header (magic, version, flags,
/// lengths, then the transfer id and the layout JSON), the receiver's replies (magic, status, message), the
/// <c>tcp://HOST:PORT</c> addresses, and exact reads. Every integer is little-endian.
/// </summary>
internal static class KvTransferWire
{
    /// <summary>The protocol version this code speaks.</summary>
    public const ushort Version = 1;

    /// <summary>Bytes of the fixed part of the sender's header.</summary>
    public const int HeaderSize = 24;

    /// <summary>Bytes of the fixed part of a reply.</summary>
    public const int ReplySize = 8;

    /// <summary>The longest transfer id, in UTF-8 bytes.</summary>
    public const int MaxTransferIdBytes = 256;

    /// <summary>The longest layout JSON, in bytes.</summary>
    public const int MaxLayoutBytes = 64 * 1024;

    /// <summary>The longest reply message, in UTF-8 bytes (longer ones are cut).</summary>
    public const int MaxMessageBytes = 1024;

    /// <summary>The address scheme of a TCP receiver.</summary>
    public const string TcpScheme = "tcp";

    /// <summary>"DKVT": a sender's header.</summary>
    private static ReadOnlySpan<byte> RequestMagic => "DKVT"u8;

    /// <summary>"DKVR": a receiver's reply.</summary>
    private static ReadOnlySpan<byte> ReplyMagic => "DKVR"u8;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The fixed part of a sender's header, as read.</summary>
    public readonly record struct Header(ushort Version, ushort Flags, int TransferIdLength, int LayoutLength, long DataLength);

    /// <summary>
    /// The sender's whole header: the fixed part, the transfer id and the layout JSON, in one buffer.
    /// <see cref="ArgumentException"/> for an empty or too long id, or a too long layout.
    /// </summary>
    public static byte[] EncodeHeader(string transferId, string layoutJson, long dataLength)
    {
        int idLength = TransferIdByteCount(transferId);
        int layoutLength = Encoding.UTF8.GetByteCount(layoutJson);
        if (layoutLength is 0 or > MaxLayoutBytes)
        {
            throw new ArgumentException($"the layout JSON must be 1 to {MaxLayoutBytes} bytes (got {layoutLength})", nameof(layoutJson));
        }

        var buffer = new byte[HeaderSize + idLength + layoutLength];
        Span<byte> span = buffer;
        RequestMagic.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], 0);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], idLength);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], layoutLength);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], dataLength);
        Encoding.UTF8.GetBytes(transferId, span.Slice(HeaderSize, idLength));
        Encoding.UTF8.GetBytes(layoutJson, span[(HeaderSize + idLength)..]);
        return buffer;
    }

    /// <summary>The UTF-8 length of a transfer id; <see cref="ArgumentException"/> when it is empty or longer than <see cref="MaxTransferIdBytes"/>.</summary>
    public static int TransferIdByteCount(string transferId)
    {
        ArgumentNullException.ThrowIfNull(transferId);
        int length = Encoding.UTF8.GetByteCount(transferId);
        if (length is 0 or > MaxTransferIdBytes)
        {
            throw new ArgumentException($"a transfer id must be 1 to {MaxTransferIdBytes} UTF-8 bytes (got {length})", nameof(transferId));
        }

        return length;
    }

    /// <summary>
    /// Reads the fixed part of a header. False with a null <paramref name="reason"/> when the magic is wrong (not
    /// this protocol: the connection is dropped without a reply); false with a reason for a header of this
    /// protocol that cannot be served (the reason goes back in a refusal).
    /// </summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> fixedPart, out Header header, out string? reason)
    {
        header = default;
        reason = null;
        if (fixedPart.Length < HeaderSize || !fixedPart[..4].SequenceEqual(RequestMagic))
        {
            return false;
        }

        header = new Header(
            BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[6..]),
            BinaryPrimitives.ReadInt32LittleEndian(fixedPart[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(fixedPart[12..]),
            BinaryPrimitives.ReadInt64LittleEndian(fixedPart[16..]));
        reason = header switch
        {
            { Version: not Version } => $"unsupported protocol version {header.Version} (this receiver speaks {Version})",
            { Flags: not 0 } => $"unsupported flags 0x{header.Flags:x4}",
            { TransferIdLength: < 1 or > MaxTransferIdBytes } => $"a transfer id of {header.TransferIdLength} bytes (1 to {MaxTransferIdBytes})",
            { LayoutLength: < 1 or > MaxLayoutBytes } => $"a layout of {header.LayoutLength} bytes (1 to {MaxLayoutBytes})",
            { DataLength: < 0 } => $"a negative data length ({header.DataLength})",
            _ => null,
        };
        return reason is null;
    }

    /// <summary>Decodes a transfer id or a layout: strict UTF-8 (<see cref="DecoderFallbackException"/> for invalid bytes).</summary>
    public static string DecodeText(ReadOnlySpan<byte> bytes) => StrictUtf8.GetString(bytes);

    /// <summary>A reply: the fixed part and the message (cut to <see cref="MaxMessageBytes"/>).</summary>
    public static byte[] EncodeReply(KvTransferReplyStatus status, string message)
    {
        byte[] text = Encoding.UTF8.GetBytes(message);
        int length = Math.Min(text.Length, MaxMessageBytes);
        var buffer = new byte[ReplySize + length];
        ReplyMagic.CopyTo(buffer);
        buffer[4] = (byte)status;
        buffer[5] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(6), (ushort)length);
        text.AsSpan(0, length).CopyTo(buffer.AsSpan(ReplySize));
        return buffer;
    }

    /// <summary>
    /// Reads the fixed part of a reply: its status and message length; false (with what is wrong) for anything
    /// that is not a reply of this protocol.
    /// </summary>
    public static bool TryReadReply(ReadOnlySpan<byte> fixedPart, out KvTransferReplyStatus status, out int messageLength, out string problem)
    {
        status = default;
        messageLength = 0;
        problem = "";
        if (!fixedPart[..4].SequenceEqual(ReplyMagic))
        {
            problem = $"a reply without the reply magic (first bytes {Convert.ToHexString(fixedPart[..4])})";
            return false;
        }

        status = (KvTransferReplyStatus)fixedPart[4];
        messageLength = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[6..]);
        if (status is not (KvTransferReplyStatus.Received or KvTransferReplyStatus.Refused))
        {
            problem = $"an unknown reply status {fixedPart[4]}";
            return false;
        }

        if (messageLength > MaxMessageBytes)
        {
            problem = $"a reply message of {messageLength} bytes (at most {MaxMessageBytes})";
            return false;
        }

        return true;
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the peer closes; returns the bytes read.</summary>
    public static async ValueTask<int> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            read += n;
        }

        return read;
    }

    /// <summary>Sends all of <paramref name="buffer"/>.</summary>
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int n = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            buffer = buffer[n..];
        }
    }

    /// <summary><c>tcp://HOST:PORT</c> (an IPv6 host in brackets).</summary>
    public static string FormatAddress(string host, int port) =>
        string.Create(CultureInfo.InvariantCulture, $"{TcpScheme}://{(IPAddress.TryParse(host, out IPAddress? ip) && ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip}]" : host)}:{port}");

    /// <summary>
    /// The host and port of a <c>tcp://HOST:PORT</c> address; <see cref="ArgumentException"/> naming the address
    /// for anything else.
    /// </summary>
    public static (string Host, int Port) ParseAddress(string address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!Uri.TryCreate(address, UriKind.Absolute, out Uri? uri) || uri.Scheme != TcpScheme || uri.Port is < 1 or > 65535
            || uri.HostNameType == UriHostNameType.Unknown || uri.AbsolutePath is not ("" or "/"))
        {
            throw new ArgumentException($"'{address}' is not a KV transfer address (tcp://HOST:PORT)", nameof(address));
        }

        return (uri.IdnHost.Trim('[', ']'), uri.Port);
    }
}
