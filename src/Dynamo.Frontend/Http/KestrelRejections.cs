using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using Dynamo.Llm.Protocols.OpenAi;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.WebUtilities;

namespace Dynamo.Frontend.Http;

/// <summary>
/// Gives Kestrel's own refusals an OpenAI error body. Kestrel refuses a request it cannot parse before the app
/// runs: a request line over MaxRequestLineSize (414), headers over MaxRequestHeadersTotalSize or
/// MaxRequestHeaderCount (431), a malformed request line or header such as <c>Content-Length: abc</c> (400), headers
/// too slow (408). It writes that answer itself, with <c>Content-Length: 0</c>, and ASP.NET Core has no hook to give
/// it a body. What it does offer: before writing, it reports the refusal synchronously as the DiagnosticSource
/// event <see cref="EventName"/>, whose payload is the request's feature collection (which falls back to the
/// connection's). So <see cref="Middleware"/> puts a <see cref="RejectionPipeWriter"/> between Kestrel's HTTP/1.1
/// parser and the socket, the event arms it with the OpenAI error of that status, and the writer sends the error
/// object in place of Kestrel's bodiless answer (the same status, <c>Connection: close</c>: Kestrel closes the
/// connection after a refusal either way). HTTP/2 (negotiated over TLS) is left as it is: its refusals are frames
/// (a 431 HEADERS frame, or the connection reset past twice the header limit), not bytes to replace.
/// </summary>
internal static class KestrelRejections
{
    /// <summary>Kestrel's event for a request it refused while parsing it.</summary>
    public const string EventName = "Microsoft.AspNetCore.Server.Kestrel.BadRequest";

    /// <summary>The connection middleware (after TLS): HTTP/1.1 connections write through a <see cref="RejectionPipeWriter"/>.</summary>
    public static ConnectionDelegate Middleware(ConnectionDelegate next) => async connection =>
    {
        if (connection.Features.Get<ITlsApplicationProtocolFeature>()?.ApplicationProtocol.Span.SequenceEqual("h2"u8) == true)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }

        IDuplexPipe transport = connection.Transport;
        var writer = new RejectionPipeWriter(transport.Output);
        connection.Features.Set(writer);
        connection.Transport = new DuplexPipe(transport.Input, writer);
        try
        {
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            connection.Transport = transport;
        }
    };

    /// <summary>Follows Kestrel's refusals on the app's <paramref name="listener"/>; dispose to stop.</summary>
    public static IDisposable Subscribe(DiagnosticListener listener) =>
        listener.Subscribe(new Observer(), name => name == EventName);

    /// <summary>Arms the connection's writer with the OpenAI error of the refusal, unless an answer has started.</summary>
    internal static void OnBadRequest(IFeatureCollection features)
    {
        if (features.Get<RejectionPipeWriter>() is { } writer
            && features.Get<IBadRequestExceptionFeature>()?.Error is BadHttpRequestException error
            && features.Get<IHttpResponseFeature>() is { HasStarted: false } response)
        {
            writer.Replace(Response(error.StatusCode, error.Message, response.Headers.Allow.ToString()));
        }
    }

    /// <summary>A whole HTTP/1.1 response: the OpenAI error of <paramref name="status"/> with Kestrel's <paramref name="message"/>.</summary>
    internal static byte[] Response(int status, string message, string allow)
    {
        OpenAiException shape = ErrorResponses.ForStatus(status);
        var error = new OpenAiException(status, shape.Type, message, null, shape.Code);
        byte[] body = JsonSerializer.SerializeToUtf8Bytes(error.ToResponse(), OpenAiJsonContext.Default.ErrorResponse);
        var head = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"HTTP/1.1 {status} {ReasonPhrases.GetReasonPhrase(status)}\r\n")
            .Append("Content-Type: application/json\r\n")
            .Append(CultureInfo.InvariantCulture, $"Content-Length: {body.Length}\r\n")
            .Append("Connection: close\r\n")
            .Append(CultureInfo.InvariantCulture, $"Date: {DateTimeOffset.UtcNow:r}\r\n");
        if (allow.Length > 0)
        {
            head.Append(CultureInfo.InvariantCulture, $"Allow: {allow}\r\n");
        }

        head.Append("\r\n");
        return [.. Encoding.ASCII.GetBytes(head.ToString()), .. body];
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;
    }

    private sealed class Observer : IObserver<KeyValuePair<string, object?>>
    {
        public void OnNext(KeyValuePair<string, object?> value)
        {
            if (value.Value is IFeatureCollection features)
            {
                OnBadRequest(features);
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }
    }
}
