namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>
/// A request that ends in an OpenAI error object with an HTTP status: thrown by the preprocessor for a
/// client's mistake (400), and by the frontend for unknown models (404), overload (429/503) and the rest.
/// </summary>
public sealed class OpenAiException : Exception
{
    /// <summary>Creates the exception.</summary>
    public OpenAiException(int statusCode, string type, string message, string? param = null, string? code = null, Exception? innerException = null)
        : base(message, innerException)
    {
        StatusCode = statusCode;
        Type = type;
        Param = param;
        Code = code;
    }

    /// <summary>The HTTP status.</summary>
    public int StatusCode { get; }

    /// <summary>The error type ("invalid_request_error", ...).</summary>
    public string Type { get; }

    /// <summary>The offending field, or null.</summary>
    public string? Param { get; }

    /// <summary>A machine-readable code, or null.</summary>
    public string? Code { get; }

    /// <summary>Seconds a client should wait before retrying (503 and 429), or null.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>A 400 invalid_request_error.</summary>
    public static OpenAiException BadRequest(string message, string? param = null, string? code = "invalid_value") =>
        new(400, "invalid_request_error", message, param, code);

    /// <summary>A 404 for a model no worker serves.</summary>
    public static OpenAiException ModelNotFound(string model) =>
        new(404, "invalid_request_error", $"The model '{model}' does not exist or no worker serves it (GET /v1/models lists the served models).", "model", "model_not_found");

    /// <summary>A 503 with Retry-After.</summary>
    public static OpenAiException Unavailable(string message, string code = "service_unavailable", int retryAfterSeconds = 1) =>
        new(503, "service_unavailable_error", message, null, code) { RetryAfterSeconds = retryAfterSeconds };

    /// <summary>The error object.</summary>
    public ErrorResponse ToResponse() => new() { Error = new ErrorDetail { Message = Message, Type = Type, Param = Param, Code = Code } };
}
