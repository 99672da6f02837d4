using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// Wire contract: what a KV transfer buffer holds, the keys and values of <see cref="TokenCount"/> tokens
/// (positions 0..TokenCount-1 of one sequence), contiguous, in the order
/// [layer][keys, then values][token][kv_head][head_dim], little-endian. The buffer is token-major, so
/// <see cref="BlockSize"/> (the sender's) is informative: a receiver with another block size can import it.
/// JSON: <c>{"layers":..,"kv_heads":..,"head_dim":..,"dtype":"f32","block_size":..,"token_count":..}</c>.
/// </summary>
public sealed partial record KvTransferLayout
{
    [JsonPropertyName("layers")]
    public required int Layers { get; init; }

    [JsonPropertyName("kv_heads")]
    public required int KvHeads { get; init; }

    [JsonPropertyName("head_dim")]
    public required int HeadDim { get; init; }

    /// <summary>Element type: "f32" (4 bytes) is the only one.</summary>
    [JsonPropertyName("dtype")]
    public required string Dtype { get; init; }

    /// <summary>Tokens per KV block of the engine that wrote the buffer.</summary>
    [JsonPropertyName("block_size")]
    public required int BlockSize { get; init; }

    [JsonPropertyName("token_count")]
    public required int TokenCount { get; init; }

    /// <summary>Bytes of the buffer this layout describes (f32).</summary>
    [JsonIgnore]
    public long ByteCount => 2L * Layers * TokenCount * KvHeads * HeadDim * sizeof(float);

    public string ToJson() => JsonSerializer.Serialize(this, JsonContext.Default.KvTransferLayout);

    /// <exception cref="JsonException">The text is not a layout (a field is missing, null or of the wrong type).</exception>
    public static KvTransferLayout FromJson(string json) =>
        JsonSerializer.Deserialize(json, JsonContext.Default.KvTransferLayout) ?? throw new JsonException("a KV transfer layout cannot be null");

    /// <summary>Missing fields and a null dtype are errors; unknown fields are ignored.</summary>
    [JsonSourceGenerationOptions(RespectNullableAnnotations = true)]
    [JsonSerializable(typeof(KvTransferLayout))]
    internal sealed partial class JsonContext : JsonSerializerContext;
}
