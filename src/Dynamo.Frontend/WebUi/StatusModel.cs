using System.Text.Json.Serialization;

namespace Dynamo.Frontend.WebUi;

/// <summary>A served model in GET /v1/dynamo/status: whether it has a chat template (else the page uses /v1/completions) and its worker count.</summary>
internal sealed record StatusModel(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("has_chat_template")] bool HasChatTemplate,
    [property: JsonPropertyName("workers")] int Workers);
