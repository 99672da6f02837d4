using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Frontend.Http;

/// <summary>Server-sent events as OpenAI sends them: <c>data: {json}\n\n</c>, comments, and <c>data: [DONE]\n\n</c>. Headers go out with the first event.</summary>
internal sealed class SseWriter(HttpResponse response)
{
    private Utf8JsonWriter? _json;

    public bool Started { get; private set; }

    public void Start()
    {
        if (Started)
        {
            return;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        Started = true;
    }

    public void WriteData<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        Start();
        var writer = response.BodyWriter;
        writer.Write("data: "u8);
        if (_json is null)
        {
            _json = new Utf8JsonWriter(writer);
        }
        else
        {
            _json.Reset(writer);
        }

        JsonSerializer.Serialize(_json, value, typeInfo);
        _json.Flush();
        writer.Write("\n\n"u8);
    }

    public void WriteKeepAlive()
    {
        Start();
        response.BodyWriter.Write(": keep-alive\n\n"u8);
    }

    public void WriteDone()
    {
        Start();
        response.BodyWriter.Write("data: [DONE]\n\n"u8);
    }

    /// <summary>Sends what was written (nothing before the first event: the status is still open).</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (Started)
        {
            await response.BodyWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
