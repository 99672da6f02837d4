using Dynamo.Llm.Protocols.OpenAi;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Dynamo.Frontend.Http;

/// <summary>
/// The outermost middleware: whatever the app answers with an error status and no body (the router's
/// rejections, Kestrel's body-level <see cref="BadHttpRequestException"/>s reaching the app, an unhandled
/// exception) leaves as an OpenAI error object with that status. What Kestrel refuses while parsing the
/// request line and headers never reaches the app: <see cref="KestrelRejections"/> gives those a body.
/// </summary>
internal static partial class ErrorResponses
{
    /// <summary>Runs <paramref name="next"/> and shapes its bodiless error answers.</summary>
    public static async Task InvokeAsync(HttpContext context, RequestDelegate next, ILogger logger)
    {
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            context.Response.StatusCode = e.StatusCode;
        }
        catch (Exception e) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            Log.Unhandled(logger, context.Request.Method, context.Request.Path, e);
            context.Response.StatusCode = StatusCodes.Status500InternalServerError;
        }

        if (!context.Response.HasStarted && context.Response.StatusCode >= 400 && !context.RequestAborted.IsCancellationRequested)
        {
            try
            {
                await OpenAiHandler.WriteErrorAsync(context.Response, ForStatus(context.Response.StatusCode, context.Request), context.RequestAborted).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                // The client is gone.
            }
        }
    }

    /// <summary>The OpenAI error for a bare status; 404 and 405 name the request's method and path.</summary>
    internal static OpenAiException ForStatus(int status, HttpRequest request) => status switch
    {
        404 => new(404, "invalid_request_error", $"Unknown route {request.Method} {request.Path}.", null, "unknown_route"),
        405 => new(405, "invalid_request_error", $"Method {request.Method} is not allowed on {request.Path}.", null, "method_not_allowed"),
        _ => ForStatus(status),
    };

    /// <summary>The OpenAI error for a bare status, without a request (Kestrel's refusals, see <see cref="KestrelRejections"/>).</summary>
    internal static OpenAiException ForStatus(int status) => status switch
    {
        400 => new(400, "invalid_request_error", "The HTTP request is malformed.", null, "bad_request"),
        405 => new(405, "invalid_request_error", "Method not allowed.", null, "method_not_allowed"),
        408 => new(408, "invalid_request_error", "The request body arrived too slowly.", null, "request_timeout"),
        413 => new(413, "invalid_request_error", "The request body is too large.", null, "request_too_large"),
        414 => new(414, "invalid_request_error", "The request line (method, URL, version) is too long.", null, "uri_too_long"),
        415 => new(415, "invalid_request_error", "The request's Content-Type is not supported: send application/json.", null, "unsupported_media_type"),
        431 => new(431, "invalid_request_error", "The request's header fields are too large.", null, "request_header_fields_too_large"),
        505 => new(505, "invalid_request_error", "The HTTP version is not supported: send HTTP/1.1 or HTTP/2.", null, "http_version_not_supported"),
        >= 500 => new(status, "internal_error", "Internal error.", null, "internal_error"),
        _ => new(status, "invalid_request_error", $"The request was refused (HTTP {status}).", null, "bad_request"),
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 5204, Level = LogLevel.Error, Message = "{Method} {Path} failed with an unexpected error")]
        public static partial void Unhandled(ILogger logger, string method, PathString path, Exception exception);
    }
}
