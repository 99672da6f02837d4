using System.Text.Json.Serialization;

namespace Dynamo.Components.Processing;

/// <summary>
/// A choice a migrated request continues (<see cref="ProcessorRequest.Resume"/>): the token ids the failed
/// processor's deltas carried for it, which the client's text already shows.
/// </summary>
internal sealed record ResumedChoice
{
    /// <summary>The choice.</summary>
    [JsonPropertyName("index")]
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public int Index { get; init; }

    /// <summary>Its output token ids so far, in order.</summary>
    [JsonPropertyName("token_ids")]
    public required IReadOnlyList<int> TokenIds { get; init; }
}
