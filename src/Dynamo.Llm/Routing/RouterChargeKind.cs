using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>What a <see cref="RouterChargeEvent"/> says of one decision. Values are part of the wire contract (the JSON carries the name).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RouterChargeKind>))]
public enum RouterChargeKind
{
    /// <summary>The decision charged its worker: prefill tokens, prompt blocks, one request in flight.</summary>
    [JsonStringEnumMemberName("charged")]
    Charged = 0,

    /// <summary>Its first token arrived: the prefill tokens are released.</summary>
    [JsonStringEnumMemberName("first_token")]
    FirstToken = 1,

    /// <summary>It ended (finished, failed or cancelled): everything still charged is released.</summary>
    [JsonStringEnumMemberName("released")]
    Released = 2,

    /// <summary>
    /// Not one decision: the replica's heartbeat, how many of its decisions are live and a digest of their ids
    /// (<see cref="RouterChargeEvent.LiveCount"/>, <see cref="RouterChargeEvent.LiveDigest"/>), so that a peer whose count
    /// disagrees resyncs its charges of that replica.
    /// </summary>
    [JsonStringEnumMemberName("live")]
    Live = 3,
}
