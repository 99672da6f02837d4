using System.Collections;
using System.Globalization;
using System.Text.Json;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Converts caller values to the template's value model: <c>null</c>, <see cref="bool"/>,
/// <see cref="long"/>, <see cref="double"/>, <see cref="string"/>, lists and string-keyed dicts
/// (insertion ordered). JSON numbers keep Python's int/float distinction: <c>1</c> is an int,
/// <c>1.0</c> a float (so <c>tojson</c> prints it back as <c>1.0</c>).
/// </summary>
public static class ChatTemplateValue
{
    /// <summary>Converts a JSON value (objects keep their key order).</summary>
    public static object? FromJson(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var dict = new Dictionary<string, object?>();
                foreach (JsonProperty p in element.EnumerateObject())
                {
                    dict[p.Name] = FromJson(p.Value);
                }

                return dict;
            case JsonValueKind.Array:
                var list = new List<object?>(element.GetArrayLength());
                foreach (JsonElement item in element.EnumerateArray())
                {
                    list.Add(FromJson(item));
                }

                return list;
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                string raw = element.GetRawText();
                bool isFloat = raw.AsSpan().IndexOfAny(".eE") >= 0;
                return !isFloat && element.TryGetInt64(out long l) ? (object)l : double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            default:
                return null;
        }
    }

    /// <summary>Normalizes any supported .NET value (deeply) to the template's value model.</summary>
    internal static object? Normalize(object? value) => value switch
    {
        null or string or bool or long or double => value,
        int i => (long)i,
        short s => (long)s,
        byte b => (long)b,
        uint u => (long)u,
        float f => (double)f,
        decimal m => (double)m,
        JsonElement e => FromJson(e),
        JsonDocument doc => FromJson(doc.RootElement),
        ChatMessage m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content },
        IReadOnlyDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => Normalize(kv.Value)),
        IDictionary d => NormalizeDictionary(d),
        IEnumerable e => e.Cast<object?>().Select(Normalize).ToList(),
        _ => throw new ChatTemplateException($"unsupported template value of type {value.GetType().Name}"),
    };

    private static Dictionary<string, object?> NormalizeDictionary(IDictionary d)
    {
        var result = new Dictionary<string, object?>();
        foreach (DictionaryEntry entry in d)
        {
            result[Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? ""] = Normalize(entry.Value);
        }

        return result;
    }
}
