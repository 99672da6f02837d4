using System.Text.Json;

namespace Dynamo.Llm.Kv;

/// <summary>
/// A hand-written reader for the common shape of a KV event (the router decodes every event a worker
/// publishes): one pass of <see cref="Utf8JsonReader"/>, no serializer metadata. It accepts only the exact
/// wire shape, each known field once and no other; for anything else (unknown or repeated fields, a
/// number out of range, malformed JSON) it answers false and <see cref="KvEventJson"/> falls back to the
/// serializer, which gives the same object or the error. So the two paths cannot disagree on what they
/// both accept (KvEventJsonTests compares them).
/// </summary>
internal static class KvEventFastReader
{
    public static bool TryRead(ReadOnlySpan<byte> utf8, out KvEvent? kvEvent)
    {
        kvEvent = null;
        try
        {
            var reader = new Utf8JsonReader(utf8);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            long? workerId = null;
            int? dpRank = null;
            ulong? eventId = null;
            KvEventData? data = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("worker_id"u8))
                {
                    if (workerId is not null || !reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long w))
                    {
                        return false;
                    }

                    workerId = w;
                }
                else if (reader.ValueTextEquals("dp_rank"u8))
                {
                    if (dpRank is not null || !reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int r))
                    {
                        return false;
                    }

                    dpRank = r;
                }
                else if (reader.ValueTextEquals("event_id"u8))
                {
                    if (eventId is not null || !reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out ulong e))
                    {
                        return false;
                    }

                    eventId = e;
                }
                else if (reader.ValueTextEquals("data"u8))
                {
                    if (data is not null || !reader.Read() || !TryReadData(ref reader, out data))
                    {
                        return false;
                    }
                }
                else
                {
                    return false;
                }
            }

            // The root object ended, and nothing but whitespace follows it.
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read() || workerId is null || eventId is null || data is null)
            {
                return false;
            }

            kvEvent = new KvEvent(workerId.Value, eventId.Value, data, dpRank ?? 0);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool TryReadData(ref Utf8JsonReader reader, out KvEventData? data)
    {
        data = null;
        if (reader.TokenType == JsonTokenType.String)
        {
            if (!reader.ValueTextEquals("cleared"u8))
            {
                return false;
            }

            data = KvClearedData.Instance;
            return true;
        }

        if (reader.TokenType != JsonTokenType.StartObject || !reader.Read() || reader.TokenType != JsonTokenType.PropertyName)
        {
            return false;
        }

        bool read = reader.ValueTextEquals("stored"u8) ? TryReadStored(ref reader, out data)
            : reader.ValueTextEquals("removed"u8) && TryReadRemoved(ref reader, out data);
        return read && reader.Read() && reader.TokenType == JsonTokenType.EndObject;
    }

    private static bool TryReadStored(ref Utf8JsonReader reader, out KvEventData? data)
    {
        data = null;
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        bool parentSeen = false;
        ulong? parent = null;
        List<KvStoredBlock>? blocks = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("parent_hash"u8))
            {
                if (parentSeen || !reader.Read())
                {
                    return false;
                }

                parentSeen = true;
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetUInt64(out ulong p))
                {
                    parent = p;
                }
                else if (reader.TokenType != JsonTokenType.Null)
                {
                    return false;
                }
            }
            else if (reader.ValueTextEquals("blocks"u8))
            {
                if (blocks is not null || !reader.Read() || reader.TokenType != JsonTokenType.StartArray)
                {
                    return false;
                }

                blocks = new List<KvStoredBlock>(16);
                while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                {
                    if (!TryReadBlock(ref reader, out KvStoredBlock block))
                    {
                        return false;
                    }

                    blocks.Add(block);
                }

                if (reader.TokenType != JsonTokenType.EndArray)
                {
                    return false;
                }
            }
            else
            {
                return false;
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject || blocks is null)
        {
            return false;
        }

        data = new KvStoredData(parent, blocks);
        return true;
    }

    private static bool TryReadBlock(ref Utf8JsonReader reader, out KvStoredBlock block)
    {
        block = default;
        ulong? blockHash = null, tokensHash = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            bool isBlock = reader.ValueTextEquals("block_hash"u8);
            if ((!isBlock && !reader.ValueTextEquals("tokens_hash"u8)) || (isBlock ? blockHash : tokensHash) is not null
                || !reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out ulong value))
            {
                return false;
            }

            if (isBlock)
            {
                blockHash = value;
            }
            else
            {
                tokensHash = value;
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject || blockHash is null || tokensHash is null)
        {
            return false;
        }

        block = new KvStoredBlock(blockHash.Value, tokensHash.Value);
        return true;
    }

    private static bool TryReadRemoved(ref Utf8JsonReader reader, out KvEventData? data)
    {
        data = null;
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject
            || !reader.Read() || reader.TokenType != JsonTokenType.PropertyName || !reader.ValueTextEquals("block_hashes"u8)
            || !reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            return false;
        }

        var hashes = new List<ulong>(16);
        while (reader.Read() && reader.TokenType == JsonTokenType.Number)
        {
            if (!reader.TryGetUInt64(out ulong hash))
            {
                return false;
            }

            hashes.Add(hash);
        }

        if (reader.TokenType != JsonTokenType.EndArray || !reader.Read() || reader.TokenType != JsonTokenType.EndObject)
        {
            return false;
        }

        data = new KvRemovedData(hashes);
        return true;
    }
}
