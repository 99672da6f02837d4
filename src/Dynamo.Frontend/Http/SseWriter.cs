using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Dynamo.Components.Processing;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Frontend.Http;

/// <summary>
/// Server-sent events as OpenAI sends them: <c>data: {json}\n\n</c>, comments, and <c>data: [DONE]\n\n</c>.
/// Headers go out with the first event. Events are written straight into the response's pipe through one
/// reused <see cref="Utf8JsonWriter"/>.
/// </summary>
internal sealed class SseWriter(HttpResponse response) : IChunkWriter
{
    private Utf8JsonWriter? _json;
    private PipeWriter? _body;

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
        _body = response.BodyWriter;
        Started = true;
    }

    public void WriteData<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        JsonSerializer.Serialize(BeginChunk(), value, typeInfo);
        EndChunk();
    }

    /// <summary>Starts a <c>data:</c> event: the writer for its JSON.</summary>
    public Utf8JsonWriter BeginChunk()
    {
        Start();
        _body!.Write("data: "u8);
        if (_json is null)
        {
            _json = new Utf8JsonWriter(_body!);
        }
        else
        {
            _json.Reset(_body!);
        }

        return _json;
    }

    /// <summary>Ends the event begun last.</summary>
    public void EndChunk()
    {
        _json!.Flush();
        _body!.Write("\n\n"u8);
    }

    public void WriteKeepAlive()
    {
        Start();
        _body!.Write(": keep-alive\n\n"u8);
    }

    public void WriteDone()
    {
        Start();
        _body!.Write("data: [DONE]\n\n"u8);
    }

    /// <summary>Sends what was written (nothing before the first event: the status is still open).</summary>
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (Started)
        {
            await _body!.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
