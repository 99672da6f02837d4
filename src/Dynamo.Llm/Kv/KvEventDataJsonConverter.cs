using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Dynamo.Llm.Kv;

/// <summary>
/// <see cref="KvEventData"/> as the original system's externally tagged union:
/// <c>{"stored":{...}}</c>, <c>{"removed":{...}}</c>, or the string <c>"cleared"</c>.
/// </summary>
internal sealed class KvEventDataJsonConverter : JsonConverter<KvEventData>
{
    private const string Stored = "stored";
    private const string Removed = "removed";
    private const string Cleared = "cleared";

    public override KvEventData Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            return reader.ValueTextEquals(Cleared)
                ? KvClearedData.Instance
                : throw new JsonException(
                    $"Unknown KV event data \"{reader.GetString()}\": expected \"cleared\", {{\"stored\":...}} or {{\"removed\":...}}.");
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException(
                $"KV event data must be \"cleared\" or an object with one key, \"stored\" or \"removed\"; got {reader.TokenType}.");
        }

        if (!reader.Read() || reader.TokenType != JsonTokenType.PropertyName)
        {
            throw new JsonException("KV event data object is empty: expected one key, \"stored\" or \"removed\".");
        }

        KvEventData data;
        if (reader.ValueTextEquals(Stored))
        {
            reader.Read();
            data = ReadVariant(ref reader, Stored, KvJsonContext.Default.KvStoredData);
        }
        else if (reader.ValueTextEquals(Removed))
        {
            reader.Read();
            data = ReadVariant(ref reader, Removed, KvJsonContext.Default.KvRemovedData);
        }
        else
        {
            throw new JsonException(
                $"Unknown KV event data kind \"{reader.GetString()}\": expected \"stored\", \"removed\" or \"cleared\".");
        }

        if (!reader.Read() || reader.TokenType != JsonTokenType.EndObject)
        {
            throw new JsonException("KV event data object must have exactly one key, \"stored\" or \"removed\".");
        }

        return data;
    }

    public override void Write(Utf8JsonWriter writer, KvEventData value, JsonSerializerOptions options)
    {
        switch (value)
        {
            case KvStoredData stored:
                writer.WriteStartObject();
                writer.WritePropertyName(Stored);
                JsonSerializer.Serialize(writer, stored, KvJsonContext.Default.KvStoredData);
                writer.WriteEndObject();
                break;
            case KvRemovedData removed:
                writer.WriteStartObject();
                writer.WritePropertyName(Removed);
                JsonSerializer.Serialize(writer, removed, KvJsonContext.Default.KvRemovedData);
                writer.WriteEndObject();
                break;
            case KvClearedData:
                writer.WriteStringValue(Cleared);
                break;
            default:
                throw new NotSupportedException($"KV event data of type {value.GetType().Name} has no wire form.");
        }
    }

    private static T ReadVariant<T>(ref Utf8JsonReader reader, string kind, JsonTypeInfo<T> typeInfo)
        where T : KvEventData
    {
        try
        {
            return JsonSerializer.Deserialize(ref reader, typeInfo)
                ?? throw new JsonException($"KV event data \"{kind}\" is null.");
        }
        catch (JsonException e)
        {
            // The inner path ("$.blocks") starts at the variant: say which one.
            throw new JsonException($"In data.{kind}: {e.Message}", e);
        }
    }
}
