using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.Unicode;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Reads an OpenAI request body: invalid UTF-8, a string escape that is not valid UTF-16 (a lone
/// surrogate such as <c>\ud800</c>), malformed JSON and values of the wrong type become a 400
/// <see cref="OpenAiException"/> whose param names the field (never an unhandled exception).
/// </summary>
public static class OpenAiRequestReader
{
    /// <summary>Parses a /v1/chat/completions body.</summary>
    public static ChatCompletionRequest ReadChat(ReadOnlySpan<byte> body) => Read(body, OpenAiJsonContext.Default.ChatCompletionRequest);

    /// <summary>Parses a /v1/completions body.</summary>
    public static CompletionRequest ReadCompletion(ReadOnlySpan<byte> body) => Read(body, OpenAiJsonContext.Default.CompletionRequest);

    private static T Read<T>(ReadOnlySpan<byte> body, JsonTypeInfo<T> info)
        where T : class
    {
        if (!Utf8.IsValid(body))
        {
            throw OpenAiException.BadRequest("The request body is not valid UTF-8.", null, "invalid_encoding");
        }

        if (JsonStringEscapes.FindLoneSurrogate(body) is string badString)
        {
            string field = badString.Length > 0 ? $"'{badString}'" : "The request body";
            throw OpenAiException.BadRequest($"{field} has a \\u escape that is not valid UTF-16 (a lone surrogate, e.g. \\ud800 without the \\udc00..\\udfff that must follow it).", badString.Length > 0 ? badString : null, "invalid_encoding");
        }

        if (body.IsEmpty)
        {
            throw OpenAiException.BadRequest("The request body is empty: expected a JSON object.", null, "invalid_json");
        }

        try
        {
            return JsonSerializer.Deserialize(body, info)
                ?? throw OpenAiException.BadRequest("The request body must be a JSON object, not null.", null, "invalid_json");
        }
        catch (JsonException e)
        {
            string reason = e.Message;
            int cut = reason.IndexOf(" Path:", StringComparison.Ordinal);
            if (cut > 0)
            {
                reason = reason[..cut];
            }

            string? param = e.Path is { Length: > 2 } path && path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : null;
            bool typeError = e.InnerException is null && reason.StartsWith("The JSON value could not be converted", StringComparison.Ordinal)
                || e.InnerException is InvalidOperationException or FormatException or OverflowException;
            string message = param is not null && typeError
                ? $"Invalid type or value for '{param}': {reason}"
                : param is not null
                    ? $"Malformed JSON at '{param}': {reason}"
                    : $"Malformed JSON in the request body: {reason}";
            throw new OpenAiException(400, "invalid_request_error", message, param, typeError ? "invalid_type" : "invalid_json", e);
        }
    }
}
