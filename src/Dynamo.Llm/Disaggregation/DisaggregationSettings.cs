using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Disaggregation;

/// <summary>
/// When a request's prefill runs on a prefill worker rather than on its decode worker (the guides'
/// <c>conditional-disagg</c>, <c>max-local-prefill-length</c> and <c>max-prefill-queue-size</c>). Lives in the
/// discovery store under <c>v1/disagg/{namespace}/{model}</c> (JSON, snake_case), written by decode workers at
/// start and by <c>./dynamo disagg</c> at run time; routers read the latest value on every request.
/// </summary>
public sealed partial record DisaggregationSettings
{
    /// <summary>The settings in force where none were written.</summary>
    public static DisaggregationSettings Default { get; } = new();

    /// <summary>
    /// True: prefill remotely only when the rule says so (<see cref="DisaggregationPolicy"/>); false: every
    /// request whose model has a prefill worker prefills remotely.
    /// </summary>
    [JsonPropertyName("conditional_disagg")]
    public bool ConditionalDisagg { get; init; } = true;

    /// <summary>Prompts whose uncached part (prompt tokens less the decode worker's prefix hit) is at most this prefill locally.</summary>
    [JsonPropertyName("max_local_prefill_length")]
    public int MaxLocalPrefillLength { get; init; } = 1000;

    /// <summary>Remote prefill only while fewer requests than this wait at the prefill workers.</summary>
    [JsonPropertyName("max_prefill_queue_size")]
    public int MaxPrefillQueueSize { get; init; } = 2;

    /// <summary>The settings a worker was given (flags or config keys): the defaults with those given; null when none was.</summary>
    public static DisaggregationSettings? FromGiven(bool? conditionalDisagg, int? maxLocalPrefillLength, int? maxPrefillQueueSize) =>
        conditionalDisagg is null && maxLocalPrefillLength is null && maxPrefillQueueSize is null ? null : Default with
        {
            ConditionalDisagg = conditionalDisagg ?? Default.ConditionalDisagg,
            MaxLocalPrefillLength = maxLocalPrefillLength ?? Default.MaxLocalPrefillLength,
            MaxPrefillQueueSize = maxPrefillQueueSize ?? Default.MaxPrefillQueueSize,
        };

    /// <summary>This, or <see cref="ArgumentException"/> naming the flag of the first value out of range.</summary>
    public DisaggregationSettings Validate()
    {
        if (MaxLocalPrefillLength < 0)
        {
            throw new ArgumentException($"--max-local-prefill-length must be 0 or more (got {MaxLocalPrefillLength})");
        }

        if (MaxPrefillQueueSize < 0)
        {
            throw new ArgumentException($"--max-prefill-queue-size must be 0 or more (got {MaxPrefillQueueSize})");
        }

        return this;
    }

    /// <summary>UTF-8 JSON.</summary>
    public byte[] ToJsonUtf8() => JsonSerializer.SerializeToUtf8Bytes(this, SettingsJsonContext.Default.DisaggregationSettings);

    /// <summary>Parses and validates settings; absent fields take the defaults.</summary>
    /// <exception cref="JsonException">Not settings JSON.</exception>
    /// <exception cref="ArgumentException">A value out of range.</exception>
    public static DisaggregationSettings FromJson(ReadOnlySpan<byte> json)
    {
        // Read through nullable fields: the generated reader would set an absent init-only property to its type's default.
        Wire wire = JsonSerializer.Deserialize(json, SettingsJsonContext.Default.Wire) ?? throw new JsonException("disaggregation settings cannot be null");
        return new DisaggregationSettings
        {
            ConditionalDisagg = wire.ConditionalDisagg ?? Default.ConditionalDisagg,
            MaxLocalPrefillLength = wire.MaxLocalPrefillLength ?? Default.MaxLocalPrefillLength,
            MaxPrefillQueueSize = wire.MaxPrefillQueueSize ?? Default.MaxPrefillQueueSize,
        }.Validate();
    }

    /// <summary>The discovery key of a model's settings.</summary>
    public static string KeyFor(string ns, string model) => $"{KeyRoot}{ns}/{model}";

    /// <summary>The prefix of every namespace's settings.</summary>
    public const string KeyRoot = "v1/disagg/";

    internal sealed record Wire(
        [property: JsonPropertyName("conditional_disagg")] bool? ConditionalDisagg,
        [property: JsonPropertyName("max_local_prefill_length")] int? MaxLocalPrefillLength,
        [property: JsonPropertyName("max_prefill_queue_size")] int? MaxPrefillQueueSize);

    [JsonSerializable(typeof(DisaggregationSettings))]
    [JsonSerializable(typeof(Wire))]
    internal sealed partial class SettingsJsonContext : JsonSerializerContext;
}
