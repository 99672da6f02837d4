using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// Wire contract: what a KV transfer buffer holds, the keys and values of <see cref="TokenCount"/> tokens
/// (positions 0..TokenCount-1 of one sequence), contiguous, in the order
/// [layer][keys, then values][token][kv_head][head_dim], little-endian, of <see cref="Dtype"/>. The buffer is token-major, so
/// <see cref="BlockSize"/> (the sender's) is informative: a receiver with another block size can import it.
/// JSON: <c>{"layers":..,"kv_heads":..,"head_dim":..,"dtype":"f32","block_size":..,"token_count":..}</c>.
/// <para>
/// A part (a tensor-parallel sender's rank pushing its own heads) also says which KV heads of the whole model it holds
/// and how many parts make the whole: <c>"kv_head_start"</c> (its first head), <c>"model_kv_heads"</c> (the whole
/// model's) and <c>"parts"</c>; its <see cref="KvHeads"/> are its own heads only. The three are absent on a whole
/// payload (one part holding every head), so a whole payload's JSON is what it always was.
/// </para>
/// </summary>
public sealed partial record KvTransferLayout
{
    [JsonPropertyName("layers")]
    public required int Layers { get; init; }

    [JsonPropertyName("kv_heads")]
    public required int KvHeads { get; init; }

    [JsonPropertyName("head_dim")]
    public required int HeadDim { get; init; }

    /// <summary>Element type: "f32" (4 bytes, little-endian IEEE binary32) or "f16" (2 bytes, IEEE binary16).</summary>
    [JsonPropertyName("dtype")]
    public required string Dtype { get; init; }

    /// <summary>Tokens per KV block of the engine that wrote the buffer.</summary>
    [JsonPropertyName("block_size")]
    public required int BlockSize { get; init; }

    [JsonPropertyName("token_count")]
    public required int TokenCount { get; init; }

    /// <summary>A part's first KV head in the whole model's numbering; null (0) on a whole payload.</summary>
    [JsonPropertyName("kv_head_start")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? KvHeadStart { get; init; }

    /// <summary>A part's whole model's KV heads; null (<see cref="KvHeads"/>) on a whole payload.</summary>
    [JsonPropertyName("model_kv_heads")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ModelKvHeads { get; init; }

    /// <summary>How many parts make the whole; null (1) on a whole payload.</summary>
    [JsonPropertyName("parts")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Parts { get; init; }

    /// <summary>The first KV head this buffer holds, in the whole model's numbering.</summary>
    [JsonIgnore]
    public int FirstKvHead => KvHeadStart ?? 0;

    /// <summary>The whole model's KV heads.</summary>
    [JsonIgnore]
    public int TotalKvHeads => ModelKvHeads ?? KvHeads;

    /// <summary>How many parts make the whole (1: this buffer is the whole).</summary>
    [JsonIgnore]
    public int PartCount => Parts ?? 1;

    /// <summary>True when this buffer holds every KV head (one part).</summary>
    [JsonIgnore]
    public bool IsWhole => PartCount == 1;

    /// <summary>Bytes of one key or value element: 2 for "f16", else 4 ("f32", and a dtype this version does not know).</summary>
    [JsonIgnore]
    public int ElementBytes => Dtype == "f16" ? 2 : sizeof(float);

    /// <summary>Bytes of the buffer this layout describes.</summary>
    [JsonIgnore]
    public long ByteCount => 2L * Layers * TokenCount * KvHeads * HeadDim * ElementBytes;

    /// <summary>
    /// Why the part fields do not describe a part of a whole (null when they do, or are absent): a head range outside
    /// the model's heads, a part count below 1 or above the heads, or one part that does not hold every head.
    /// </summary>
    public string? PartProblem()
    {
        if (KvHeadStart is null && ModelKvHeads is null && Parts is null)
        {
            return null;
        }

        int start = FirstKvHead, total = TotalKvHeads, parts = PartCount;
        return parts < 1 ? $"parts {parts} must be at least 1"
            : start < 0 || KvHeads < 1 || start + KvHeads > total ? $"KV heads {start}..{start + KvHeads - 1} are not within the model's {total}"
            : parts > total ? $"{parts} parts of {total} KV heads leave a part without heads"
            : parts == 1 && KvHeads != total ? $"a single part must hold all {total} KV heads, not {KvHeads}"
            : null;
    }

    /// <summary>The layout of the whole this part belongs to: every head, no part fields.</summary>
    public KvTransferLayout Whole() => this with { KvHeads = TotalKvHeads, KvHeadStart = null, ModelKvHeads = null, Parts = null };

    /// <summary>
    /// Whether <paramref name="other"/> is a part of the same whole as this one: the same layers, head size, dtype,
    /// block size, tokens, model heads and part count.
    /// </summary>
    public bool SameWholeAs(KvTransferLayout other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Layers == other.Layers && HeadDim == other.HeadDim && Dtype == other.Dtype && BlockSize == other.BlockSize
            && TokenCount == other.TokenCount && TotalKvHeads == other.TotalKvHeads && PartCount == other.PartCount;
    }

    public string ToJson() => JsonSerializer.Serialize(this, JsonContext.Default.KvTransferLayout);

    /// <exception cref="JsonException">The text is not a layout (a field is missing, null or of the wrong type).</exception>
    public static KvTransferLayout FromJson(string json) =>
        JsonSerializer.Deserialize(json, JsonContext.Default.KvTransferLayout) ?? throw new JsonException("a KV transfer layout cannot be null");

    /// <summary>Missing fields and a null dtype are errors; unknown fields are ignored.</summary>
    [JsonSourceGenerationOptions(RespectNullableAnnotations = true)]
    [JsonSerializable(typeof(KvTransferLayout))]
    internal sealed partial class JsonContext : JsonSerializerContext;
}
