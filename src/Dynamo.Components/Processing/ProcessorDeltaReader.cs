using System.Text.Json;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Components.Processing;

/// <summary>
/// The delta frames of a Processor component's answer (one per token), read and written without the
/// serializer's objects. <see cref="TryRead"/> is a one-pass <see cref="Utf8JsonReader"/> for the exact shape
/// <see cref="Write"/> produces (each field at most once, <c>t</c> first and <c>delta</c>, no log
/// probabilities): it allocates the text only. Anything else (log probabilities, other frames, unknown or
/// repeated fields) is left to the serializer, which reads it to the same event or fails; ProcessorDeltaReaderTests
/// compares the two both ways.
/// </summary>
internal static class ProcessorDeltaReader
{
    [ThreadStatic]
    private static FrameBuffer? t_buffer;

    /// <summary>The event of a delta frame of the usual shape; false for any other frame.</summary>
    public static bool TryRead(ReadOnlySpan<byte> utf8, out ChoiceEvent e)
    {
        e = default;
        try
        {
            var reader = new Utf8JsonReader(utf8);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject
                || !reader.Read() || reader.TokenType != JsonTokenType.PropertyName || !reader.ValueTextEquals("t"u8)
                || !reader.Read() || reader.TokenType != JsonTokenType.String || !reader.ValueTextEquals("delta"u8))
            {
                return false;
            }

            int index = 0, textOffset = 0, newTokens = 0, completionTokens = 0, cachedTokens = 0;
            string? text = null, finishReason = null;
            int seen = 0;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                int field = reader.ValueTextEquals("index"u8) ? 1
                    : reader.ValueTextEquals("text"u8) ? 2
                    : reader.ValueTextEquals("text_offset"u8) ? 4
                    : reader.ValueTextEquals("finish_reason"u8) ? 8
                    : reader.ValueTextEquals("new_tokens"u8) ? 16
                    : reader.ValueTextEquals("completion_tokens"u8) ? 32
                    : reader.ValueTextEquals("cached_tokens"u8) ? 64
                    : 0;
                if (field == 0 || (seen & field) != 0 || !reader.Read())
                {
                    return false;
                }

                seen |= field;
                bool ok = field switch
                {
                    1 => TryInt(ref reader, out index),
                    2 => TryString(ref reader, out text),
                    4 => TryInt(ref reader, out textOffset),
                    8 => TryString(ref reader, out finishReason),
                    16 => TryInt(ref reader, out newTokens),
                    32 => TryInt(ref reader, out completionTokens),
                    _ => TryInt(ref reader, out cachedTokens),
                };
                if (!ok)
                {
                    return false;
                }
            }

            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
            {
                return false;
            }

            e = new ChoiceEvent(index, new ChoiceDelta(text ?? "", null, textOffset, finishReason), newTokens, completionTokens, cachedTokens, null);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>
    /// The delta frame of <paramref name="e"/>, as the serializer writes a <see cref="ProcessorFrame"/> (fields at
    /// their default left out), for an event without log probabilities; null for one with them.
    /// </summary>
    public static byte[]? Write(in ChoiceEvent e)
    {
        ChoiceDelta d = e.Delta;
        if (d.Logprobs is not null)
        {
            return null;
        }

        FrameBuffer buffer = t_buffer ??= new FrameBuffer();
        Utf8JsonWriter json = buffer.Start();
        json.WriteStartObject();
        json.WriteString("t"u8, "delta"u8);
        WriteIfSet(json, "index"u8, e.Index);
        if (d.Text is not null)
        {
            json.WriteString("text"u8, d.Text);
        }

        WriteIfSet(json, "text_offset"u8, d.TextOffset);
        if (d.FinishReason is not null)
        {
            json.WriteString("finish_reason"u8, d.FinishReason);
        }

        WriteIfSet(json, "new_tokens"u8, e.NewTokens);
        WriteIfSet(json, "completion_tokens"u8, e.CompletionTokens);
        WriteIfSet(json, "cached_tokens"u8, e.CachedTokens);
        json.WriteEndObject();
        return buffer.Finish();
    }

    private static void WriteIfSet(Utf8JsonWriter json, ReadOnlySpan<byte> name, int value)
    {
        if (value != 0)
        {
            json.WriteNumber(name, value);
        }
    }

    private static bool TryInt(ref Utf8JsonReader reader, out int value)
    {
        value = 0;
        return reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out value);
    }

    private static bool TryString(ref Utf8JsonReader reader, out string? value)
    {
        value = null;
        if (reader.TokenType != JsonTokenType.String)
        {
            return false;
        }

        value = reader.ValueTextEquals("stop"u8) ? "stop" : reader.ValueTextEquals("length"u8) ? "length" : reader.GetString();
        return true;
    }

    /// <summary>A thread's reused buffer and JSON writer for frames.</summary>
    private sealed class FrameBuffer
    {
        private readonly System.Buffers.ArrayBufferWriter<byte> _buffer = new(256);
        private readonly Utf8JsonWriter _json;

        public FrameBuffer() => _json = new Utf8JsonWriter(_buffer);

        public Utf8JsonWriter Start()
        {
            _buffer.ResetWrittenCount();
            _json.Reset(_buffer);
            return _json;
        }

        public byte[] Finish()
        {
            _json.Flush();
            return _buffer.WrittenSpan.ToArray();
        }
    }
}
