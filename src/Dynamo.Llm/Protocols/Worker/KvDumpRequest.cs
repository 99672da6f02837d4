using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// A request to a worker's <c>kv_dump</c> endpoint: which data-parallel rank's cache to dump. An empty payload asks
/// for rank 0 (a worker with one engine, and routers that predate data parallelism).
/// </summary>
public sealed record KvDumpRequest
{
    /// <summary>The rank whose cache to dump.</summary>
    [JsonPropertyName("dp_rank")]
    public int DpRank { get; init; }

    /// <summary>The payload asking for <paramref name="dpRank"/>: empty for rank 0.</summary>
    public static byte[] Serialize(int dpRank) =>
        dpRank == 0 ? [] : JsonSerializer.SerializeToUtf8Bytes(new KvDumpRequest { DpRank = dpRank }, WorkerJsonContext.Default.KvDumpRequest);

    /// <summary>Reads a payload (empty: rank 0); <see cref="FormatException"/> when it is not a dump request.</summary>
    public static KvDumpRequest Parse(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty)
        {
            return new KvDumpRequest();
        }

        try
        {
            return JsonSerializer.Deserialize(payload, WorkerJsonContext.Default.KvDumpRequest) ?? throw new FormatException("a kv_dump request is an object, not null");
        }
        catch (JsonException e)
        {
            throw new FormatException($"malformed kv_dump request: {e.Message}", e);
        }
    }
}
