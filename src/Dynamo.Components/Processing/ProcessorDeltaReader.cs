using System.Text.Json;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Components.Processing;

/// <summary>
/// The delta frames of a Processor component's answer (one per token), read and written without the
/// serializer's objects. <see cref="TryRead"/> is a one-pass <see cref="Utf8JsonReader"/> for the exact shape
/// <see cref="Write"/> produces (each field at most once, <c>t</c> first and <c>delta</c>, no log
/// probabilities): it allocates the text only, the token ids going to the choice's <see cref="TokenLog"/>.
/// Anything else (log probabilities, other frames, unknown or repeated fields) is left to the serializer,
/// which reads it to the same event or fails; ProcessorDeltaReaderTests compares the two both ways.
/// </summary>
internal static class ProcessorDeltaReader
{
    [ThreadStatic]
    private static FrameBuffer? t_buffer;

    [ThreadStatic]
    private static TokenIdBuffer? t_tokenIds;

    /// <summary>
    /// The event of a delta frame of the usual shape; false for any other frame. Its token ids are appended to
    /// <paramref name="logs"/>[index] when given (the event's <see cref="ChoiceEvent.TokenIds"/> is that part of
    /// the log), else copied.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> utf8, out ChoiceEvent e, TokenLog[]? logs = null)
    {
        e = default;
        TokenIdBuffer ids = t_tokenIds ??= new TokenIdBuffer();
        ids.Count = 0;
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
                    : reader.ValueTextEquals("token_ids"u8) ? 128
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
                    64 => TryInt(ref reader, out cachedTokens),
                    _ => ids.TryRead(ref reader),
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

            e = new ChoiceEvent(index, new ChoiceDelta(text ?? "", null, textOffset, finishReason), newTokens, completionTokens, cachedTokens, null)
            {
                TokenIds = Keep(ids.Span, index, logs),
            };
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>
    /// <paramref name="ids"/>, a delta's token ids for choice <paramref name="index"/>, appended to its log when
    /// there is one, else copied.
    /// </summary>
    public static ReadOnlyMemory<int> Keep(ReadOnlySpan<int> ids, int index, TokenLog[]? logs) =>
        ids.IsEmpty ? ReadOnlyMemory<int>.Empty
        : logs is not null && (uint)index < (uint)logs.Length ? logs[index].Append(ids)
        : ids.ToArray();

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
        if (!e.TokenIds.IsEmpty)
        {
            json.WriteStartArray("token_ids"u8);
            foreach (int id in e.TokenIds.Span)
            {
                json.WriteNumberValue(id);
            }

            json.WriteEndArray();
        }

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

    /// <summary>A thread's reused buffer for the token ids of the frame being read.</summary>
    private sealed class TokenIdBuffer
    {
        private int[] _items = new int[16];

        public int Count { get; set; }

        public ReadOnlySpan<int> Span => _items.AsSpan(0, Count);

        /// <summary>Reads an array of token ids (the reader on its start).</summary>
        public bool TryRead(ref Utf8JsonReader reader)
        {
            if (reader.TokenType != JsonTokenType.StartArray)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.Number)
            {
                if (!reader.TryGetInt32(out int id))
                {
                    return false;
                }

                if (Count == _items.Length)
                {
                    Array.Resize(ref _items, _items.Length * 2);
                }

                _items[Count++] = id;
            }

            return reader.TokenType == JsonTokenType.EndArray;
        }
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
