using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>One alternative token and its log probability.</summary>
/// <param name="TokenId">The token.</param>
/// <param name="Logprob">Its log probability.</param>
public sealed record GenerateTopLogprob(
    [property: JsonPropertyName("token_id")] int TokenId,
    [property: JsonPropertyName("logprob")] float Logprob);
