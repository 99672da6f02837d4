using System.Text;
using System.Text.Json;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Finds JSON strings whose escapes do not make valid UTF-16: a <c>\uD800</c>..<c>\uDBFF</c> not followed by
/// a <c>\uDC00</c>..<c>\uDFFF</c>, or a low surrogate on its own. UTF-8 validation of the body cannot see
/// them (the escape is plain ASCII), and System.Text.Json only fails when such a string is materialized,
/// which for a <see cref="JsonElement"/> field happens long after reading. One pass, only when the body
/// contains a <c>\uD</c> escape at all.
/// </summary>
internal static class JsonStringEscapes
{
    /// <summary>
    /// The path (as <c>messages[0].content</c>; <c>""</c> for the root value) of the first string or property
    /// name with a lone surrogate escape, or null when there is none or the JSON is malformed (the
    /// deserializer reports that).
    /// </summary>
    public static string? FindLoneSurrogate(ReadOnlySpan<byte> json)
    {
        if (!MayHaveSurrogateEscape(json))
        {
            return null;
        }

        var frames = new List<Frame>();
        var reader = new Utf8JsonReader(json);
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        frames.Add(new Frame(reader.TokenType == JsonTokenType.StartArray));
                        break;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        frames.RemoveAt(frames.Count - 1);
                        AfterValue(frames);
                        break;
                    case JsonTokenType.PropertyName:
                        string name = Encoding.UTF8.GetString(reader.ValueSpan);
                        frames[^1] = frames[^1] with { Name = name };
                        if (reader.ValueIsEscaped && !EscapesAreValid(reader.ValueSpan))
                        {
                            return PathOf(frames);
                        }

                        break;
                    case JsonTokenType.String:
                        if (reader.ValueIsEscaped && !EscapesAreValid(reader.ValueSpan))
                        {
                            return PathOf(frames);
                        }

                        AfterValue(frames);
                        break;
                    default:
                        AfterValue(frames);
                        break;
                }
            }
        }
        catch (JsonException)
        {
            return null;
        }

        return null;
    }

    /// <summary>Whether <paramref name="escaped"/> (a string's raw text between its quotes) unescapes to valid UTF-16.</summary>
    internal static bool EscapesAreValid(ReadOnlySpan<byte> escaped)
    {
        int i = 0;
        while (i < escaped.Length)
        {
            if (escaped[i] != (byte)'\\')
            {
                i++;
                continue;
            }

            if (escaped[i + 1] != (byte)'u')
            {
                i += 2;
                continue;
            }

            int unit = Hex(escaped.Slice(i + 2, 4));
            i += 6;
            if (unit is >= 0xDC00 and <= 0xDFFF)
            {
                return false;
            }

            if (unit is >= 0xD800 and <= 0xDBFF)
            {
                if (i + 6 > escaped.Length || escaped[i] != (byte)'\\' || escaped[i + 1] != (byte)'u' || Hex(escaped.Slice(i + 2, 4)) is < 0xDC00 or > 0xDFFF)
                {
                    return false;
                }

                i += 6;
            }
        }

        return true;
    }

    /// <summary>A cheap filter: a surrogate escape starts with <c>\u</c> then <c>d</c> or <c>D</c>.</summary>
    private static bool MayHaveSurrogateEscape(ReadOnlySpan<byte> json)
    {
        int at;
        while ((at = json.IndexOf("\\u"u8)) >= 0)
        {
            if (at + 2 < json.Length && (json[at + 2] | 0x20) == (byte)'d')
            {
                return true;
            }

            json = json[(at + 2)..];
        }

        return false;
    }

    private static int Hex(ReadOnlySpan<byte> four)
    {
        int value = 0;
        foreach (byte b in four)
        {
            value = (value << 4) | (b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10);
        }

        return value;
    }

    private static void AfterValue(List<Frame> frames)
    {
        if (frames.Count > 0 && frames[^1].IsArray)
        {
            frames[^1] = frames[^1] with { Index = frames[^1].Index + 1 };
        }
    }

    private static string PathOf(List<Frame> frames)
    {
        var path = new StringBuilder();
        foreach (Frame f in frames)
        {
            if (f.IsArray)
            {
                path.Append('[').Append(f.Index).Append(']');
            }
            else if (f.Name is not null)
            {
                path.Append(path.Length == 0 ? "" : ".").Append(f.Name);
            }
        }

        return path.ToString();
    }

    private readonly record struct Frame(bool IsArray, int Index = 0, string? Name = null);
}
