using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>POST /v1/chat/completions.</summary>
public sealed record ChatCompletionRequest : OpenAiRequestBase
{
    /// <summary>The conversation (at least one message).</summary>
    [JsonPropertyName("messages")]
    public IReadOnlyList<ChatMessageRequest>? Messages { get; init; }

    /// <summary>Newer name of max_tokens; wins when both are given.</summary>
    [JsonPropertyName("max_completion_tokens")]
    public int? MaxCompletionTokens { get; init; }

    /// <summary>Return each output token's log probability.</summary>
    [JsonPropertyName("logprobs")]
    public bool? Logprobs { get; init; }

    /// <summary>With logprobs: this many alternatives per position, 0..20.</summary>
    [JsonPropertyName("top_logprobs")]
    public int? TopLogprobs { get; init; }

    /// <summary>Tool definitions: not supported (anything but null or an empty array is refused with a 400).</summary>
    [JsonPropertyName("tools")]
    public JsonElement? Tools { get; init; }

    /// <summary>Which tool to call: not supported (anything but null or "none" is refused with a 400).</summary>
    [JsonPropertyName("tool_choice")]
    public JsonElement? ToolChoice { get; init; }

    /// <summary>The deprecated form of tools: not supported (anything but null or an empty array is refused with a 400).</summary>
    [JsonPropertyName("functions")]
    public JsonElement? Functions { get; init; }

    /// <summary>The deprecated form of tool_choice: not supported (anything but null or "none" is refused with a 400).</summary>
    [JsonPropertyName("function_call")]
    public JsonElement? FunctionCall { get; init; }

    /// <summary>Structured output: not supported (anything but null or <c>{"type":"text"}</c> is refused with a 400).</summary>
    [JsonPropertyName("response_format")]
    public JsonElement? ResponseFormat { get; init; }
}
