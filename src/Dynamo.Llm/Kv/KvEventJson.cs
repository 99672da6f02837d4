using System.Text.Json;

namespace Dynamo.Llm.Kv;

/// <summary>
/// The JSON wire format of <see cref="KvEvent"/> and <see cref="KvEventDump"/> (shapes in Kv/README.md).
/// u64 hashes are JSON numbers, written and read exactly. Reading ignores unknown fields and throws
/// <see cref="FormatException"/> (wrapping the <see cref="JsonException"/>, if any) for anything else
/// that is not a well-formed event or dump.
/// </summary>
public static class KvEventJson
{
    public static string Serialize(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        return JsonSerializer.Serialize(kvEvent, KvJsonContext.Default.KvEvent);
    }

    public static byte[] SerializeToUtf8(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        return JsonSerializer.SerializeToUtf8Bytes(kvEvent, KvJsonContext.Default.KvEvent);
    }

    /// <summary>
    /// Reads one event. The exact wire shape takes a hand-written one-pass reader; anything else (unknown
    /// fields, other spellings, errors) goes through the serializer, so the result is the same either way.
    /// </summary>
    public static KvEvent Deserialize(ReadOnlySpan<byte> utf8)
    {
        if (KvEventFastReader.TryRead(utf8, out KvEvent? fast))
        {
            return fast!;
        }

        return DeserializeWithSerializer(utf8);
    }

    internal static KvEvent DeserializeWithSerializer(ReadOnlySpan<byte> utf8)
    {
        KvEvent? kvEvent;
        try
        {
            kvEvent = JsonSerializer.Deserialize(utf8, KvJsonContext.Default.KvEvent);
        }
        catch (JsonException e)
        {
            throw Invalid("KV event", e);
        }

        return kvEvent ?? throw new FormatException("Invalid KV event JSON: the value is null.");
    }

    public static KvEvent Deserialize(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        KvEvent? kvEvent;
        try
        {
            kvEvent = JsonSerializer.Deserialize(json, KvJsonContext.Default.KvEvent);
        }
        catch (JsonException e)
        {
            throw Invalid("KV event", e);
        }

        return kvEvent ?? throw new FormatException("Invalid KV event JSON: the value is null.");
    }

    public static string SerializeDump(KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        return JsonSerializer.Serialize(dump, KvJsonContext.Default.KvEventDump);
    }

    public static byte[] SerializeDumpToUtf8(KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        return JsonSerializer.SerializeToUtf8Bytes(dump, KvJsonContext.Default.KvEventDump);
    }

    public static KvEventDump DeserializeDump(ReadOnlySpan<byte> utf8)
    {
        KvEventDump? dump;
        try
        {
            dump = JsonSerializer.Deserialize(utf8, KvJsonContext.Default.KvEventDump);
        }
        catch (JsonException e)
        {
            throw Invalid("KV event dump", e);
        }

        return Validate(dump ?? throw new FormatException("Invalid KV event dump JSON: the value is null."));
    }

    public static KvEventDump DeserializeDump(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        KvEventDump? dump;
        try
        {
            dump = JsonSerializer.Deserialize(json, KvJsonContext.Default.KvEventDump);
        }
        catch (JsonException e)
        {
            throw Invalid("KV event dump", e);
        }

        return Validate(dump ?? throw new FormatException("Invalid KV event dump JSON: the value is null."));
    }

    private static FormatException Invalid(string what, JsonException e) =>
        new($"Invalid {what} JSON: {e.Message}", e);

    // The serializer already rejects a null where a type says non-null, except for list elements: the
    // one list of a reference type is the dump's.
    private static KvEventDump Validate(KvEventDump dump)
    {
        for (int i = 0; i < dump.Stored.Count; i++)
        {
            if (dump.Stored[i] is null)
            {
                throw new FormatException($"Invalid KV event dump JSON: stored[{i}] is null.");
            }
        }

        return dump;
    }
}
