using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Components.KvTransfer;

/// <summary>The wire format, pinned byte for byte (README.md of Dynamo.Components/KvTransfer).</summary>
public sealed class KvTransferWireTests
{
    private static readonly KvTransferLayout Layout = new() { Layers = 2, KvHeads = 2, HeadDim = 16, Dtype = "f32", BlockSize = 16, TokenCount = 500 };

    private const string LayoutJson = """{"layers":2,"kv_heads":2,"head_dim":16,"dtype":"f32","block_size":16,"token_count":500}""";

    [Fact]
    public void EncodeHeader_Golden()
    {
        byte[] header = KvTransferWire.EncodeHeader("req-1", Layout.ToJson(), Layout.ByteCount);

        Assert.Equal(LayoutJson, Layout.ToJson());
        Assert.Equal(
            "444B5654" + "0100" + "0000" + "05000000" + "57000000" + "00E8030000000000",
            Convert.ToHexString(header, 0, KvTransferWire.HeaderSize));
        Assert.Equal("req-1" + LayoutJson, System.Text.Encoding.UTF8.GetString(header, KvTransferWire.HeaderSize, header.Length - KvTransferWire.HeaderSize));
        Assert.True(KvTransferWire.TryReadHeader(header, out KvTransferWire.Header read, out string? reason));
        Assert.Null(reason);
        Assert.Equal(new KvTransferWire.Header(1, 0, 5, LayoutJson.Length, 256_000), read);
    }

    [Fact]
    public void EncodeReply_Golden()
    {
        Assert.Equal("444B5652" + "02" + "00" + "0200" + "6E6F", Convert.ToHexString(KvTransferWire.EncodeReply(KvTransferReplyStatus.Refused, "no")));
        Assert.Equal("444B5652" + "01" + "00" + "0000", Convert.ToHexString(KvTransferWire.EncodeReply(KvTransferReplyStatus.Received, "")));
        Assert.Equal(8 + KvTransferWire.MaxMessageBytes, KvTransferWire.EncodeReply(KvTransferReplyStatus.Refused, new string('x', 5000)).Length);
    }

    [Theory]
    [InlineData("444B5654" + "0200" + "0000" + "05000000" + "10000000" + "0000000000000000", "unsupported protocol version 2 (this receiver speaks 1)")]
    [InlineData("444B5654" + "0100" + "0100" + "05000000" + "10000000" + "0000000000000000", "unsupported flags 0x0001")]
    [InlineData("444B5654" + "0100" + "0000" + "00000000" + "10000000" + "0000000000000000", "a transfer id of 0 bytes (1 to 256)")]
    [InlineData("444B5654" + "0100" + "0000" + "05000000" + "01000100" + "0000000000000000", "a layout of 65537 bytes (1 to 65536)")]
    [InlineData("444B5654" + "0100" + "0000" + "05000000" + "10000000" + "FFFFFFFFFFFFFFFF", "a negative data length (-1)")]
    public void TryReadHeader_OutOfBounds_RefusedWithReason(string hex, string expected)
    {
        Assert.False(KvTransferWire.TryReadHeader(Convert.FromHexString(hex), out _, out string? reason));
        Assert.Equal(expected, reason);
    }

    [Fact]
    public void TryReadHeader_WrongMagic_NoReason()
    {
        Assert.False(KvTransferWire.TryReadHeader("GET / HTTP/1.1\r\nHost: abc\r\n"u8, out _, out string? reason));
        Assert.Null(reason);
    }

    [Theory]
    [InlineData("tcp://10.0.0.7:41000", "10.0.0.7", 41000)]
    [InlineData("tcp://decode-1.example:5000", "decode-1.example", 5000)]
    [InlineData("tcp://[::1]:5000", "::1", 5000)]
    public void ParseAddress_RoundTrips(string address, string host, int port)
    {
        Assert.Equal((host, port), KvTransferWire.ParseAddress(address));
        Assert.Equal(address, KvTransferWire.FormatAddress(host, port));
    }

    [Theory]
    [InlineData("tcp://10.0.0.7")]
    [InlineData("nats://10.0.0.7:4222")]
    [InlineData("tcp://10.0.0.7:4222/x")]
    [InlineData("10.0.0.7:4222")]
    public void ParseAddress_NotATransferAddress_ArgumentExceptionNamingIt(string address)
    {
        Assert.Contains($"'{address}' is not a KV transfer address", Assert.Throws<ArgumentException>(() => KvTransferWire.ParseAddress(address)).Message);
    }
}
