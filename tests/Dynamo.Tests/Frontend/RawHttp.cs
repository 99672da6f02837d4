using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// HTTP/1.1 over a plain socket, for what HttpClient refuses to send (a malformed Content-Length, broken
/// chunking, oversized headers) or sends differently (a body trickled slowly).
/// </summary>
internal sealed class RawHttp : IDisposable
{
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;

    private RawHttp(TcpClient client)
    {
        _client = client;
        _stream = client.GetStream();
    }

    public static async Task<RawHttp> ConnectAsync(Uri baseAddress)
    {
        var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(baseAddress.Host, baseAddress.Port);
        return new RawHttp(client);
    }

    /// <summary>Sends one request (the text as is) and reads the answer.</summary>
    public static async Task<Response> SendAsync(Uri baseAddress, string request)
    {
        using RawHttp raw = await ConnectAsync(baseAddress);
        await raw.WriteAsync(request);
        return await raw.ReadResponseAsync();
    }

    public async Task WriteAsync(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>Reads one response: status line, headers, and a Content-Length or chunked body (or to the end of the connection). Status 0 when the server closed without answering.</summary>
    public async Task<Response> ReadResponseAsync(CancellationToken cancellationToken = default)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cancel.CancelAfter(TimeSpan.FromSeconds(60));
        var buffer = new List<byte>();
        var chunk = new byte[8192];
        int headerEnd;
        while ((headerEnd = IndexOf(buffer, "\r\n\r\n"u8)) < 0)
        {
            int read = await _stream.ReadAsync(chunk, cancel.Token);
            if (read == 0)
            {
                return new Response(0, new Dictionary<string, string>(), "");
            }

            buffer.AddRange(chunk.AsSpan(0, read));
        }

        string head = Encoding.ASCII.GetString([.. buffer.Take(headerEnd)]);
        string[] lines = head.Split("\r\n");
        int status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = lines.Skip(1).Select(l => l.Split(':', 2)).ToDictionary(p => p[0].Trim().ToLowerInvariant(), p => p[1].Trim());
        var body = new List<byte>(buffer.Skip(headerEnd + 4));
        if (headers.TryGetValue("content-length", out string? length))
        {
            int want = int.Parse(length, System.Globalization.CultureInfo.InvariantCulture);
            while (body.Count < want)
            {
                int read = await _stream.ReadAsync(chunk, cancel.Token);
                if (read == 0)
                {
                    break;
                }

                body.AddRange(chunk.AsSpan(0, read));
            }
        }
        else
        {
            while (IndexOf(body, "0\r\n\r\n"u8) < 0 && await _stream.ReadAsync(chunk, cancel.Token) is int read and > 0)
            {
                body.AddRange(chunk.AsSpan(0, read));
            }

            if (headers.TryGetValue("transfer-encoding", out string? te) && te == "chunked")
            {
                body = Dechunk(body);
            }
        }

        return new Response(status, headers, Encoding.UTF8.GetString([.. body]));
    }

    /// <summary>True when the server has closed the connection (a read returns 0 or the connection resets).</summary>
    public async Task<bool> ClosedByServerAsync(CancellationToken cancellationToken)
    {
        var chunk = new byte[4096];
        try
        {
            while (await _stream.ReadAsync(chunk, cancellationToken) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _client.Dispose();
    }

    private static int IndexOf(List<byte> data, ReadOnlySpan<byte> pattern) =>
        System.Runtime.InteropServices.CollectionsMarshal.AsSpan(data).IndexOf(pattern);

    private static List<byte> Dechunk(List<byte> chunked)
    {
        var data = new List<byte>();
        int at = 0;
        byte[] all = [.. chunked];
        while (true)
        {
            int lineEnd = all.AsSpan(at).IndexOf("\r\n"u8);
            int size = Convert.ToInt32(Encoding.ASCII.GetString(all, at, lineEnd), 16);
            if (size == 0)
            {
                return data;
            }

            data.AddRange(all.AsSpan(at + lineEnd + 2, size));
            at += lineEnd + 2 + size + 2;
        }
    }

    /// <summary>A response as read off the socket (status 0: closed without one).</summary>
    public sealed record Response(int Status, IReadOnlyDictionary<string, string> Headers, string Body)
    {
        /// <summary>The OpenAI error object of the body (asserting its shape).</summary>
        public JsonElement Error()
        {
            Assert.Equal("application/json", Headers.TryGetValue("content-type", out string? type) ? type : null);
            JsonElement error = JsonDocument.Parse(Body).RootElement.GetProperty("error");
            Assert.Equal(JsonValueKind.String, error.GetProperty("message").ValueKind);
            Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
            Assert.True(error.TryGetProperty("param", out _));
            Assert.True(error.TryGetProperty("code", out _));
            return error;
        }
    }
}
