using System.Text.Json;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// Reads the generate responses of one worker stream into buffers of its own, reused frame after frame
/// (the frontend reads one per streamed token). A hand-written one-pass <see cref="Utf8JsonReader"/> takes the
/// exact wire shape: each of token_ids, logprobs, finish_reason, prompt_tokens and cached_tokens at most once,
/// integers and numbers where the contract has them; it allocates nothing unless the finish reason is not
/// one of the three the protocol names. Anything else (top_logprobs, unknown or repeated fields, nulls
/// where arrays belong, malformed JSON) goes to the serializer, which gives the same values or the error.
/// So the two paths cannot disagree on what they both accept (GenerateResponseReaderTests compares them).
/// Not thread-safe: one per stream.
/// </summary>
internal sealed class GenerateResponseReader
{
    private int[] _tokenIds = new int[4];
    private float[] _logprobs = new float[4];
    private int _tokenCount;
    private int _logprobCount;

    /// <summary>The new token ids.</summary>
    public ReadOnlySpan<int> TokenIds => _tokenIds.AsSpan(0, _tokenCount);

    /// <summary>Whether the frame had <c>logprobs</c>.</summary>
    public bool HasLogprobs { get; private set; }

    /// <summary>Their log probabilities (empty without <see cref="HasLogprobs"/>).</summary>
    public ReadOnlySpan<float> Logprobs => _logprobs.AsSpan(0, _logprobCount);

    /// <summary>Alternatives per token, when the frame had them.</summary>
    public IReadOnlyList<IReadOnlyList<GenerateTopLogprob>>? TopLogprobs { get; private set; }

    /// <summary>"stop", "length", "cancelled" (the same string instances every time) or what else the worker sent, on the last frame.</summary>
    public string? FinishReason { get; private set; }

    public int? PromptTokens { get; private set; }

    public int? CachedTokens { get; private set; }

    /// <summary>Where a disaggregated request's prefill ran (its last frame; read by the serializer path).</summary>
    public PrefillReport? Prefill { get; private set; }

    /// <summary>Reads one frame; throws as the serializer does for one it cannot read, and for the JSON <c>null</c>.</summary>
    public void Read(ReadOnlySpan<byte> utf8)
    {
        if (!TryReadFast(utf8))
        {
            ReadWithSerializer(utf8);
        }
    }

    /// <summary>The one-pass reader alone: false (and the state undefined) for anything but the exact wire shape.</summary>
    internal bool TryReadFast(ReadOnlySpan<byte> utf8)
    {
        Clear();
        try
        {
            var reader = new Utf8JsonReader(utf8);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            bool tokens = false, logprobs = false, finish = false, prompt = false, cached = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool ok;
                if (reader.ValueTextEquals("token_ids"u8))
                {
                    ok = !tokens && TryReadTokenIds(ref reader);
                    tokens = true;
                }
                else if (reader.ValueTextEquals("logprobs"u8))
                {
                    ok = !logprobs && TryReadLogprobs(ref reader);
                    logprobs = true;
                }
                else if (reader.ValueTextEquals("finish_reason"u8))
                {
                    ok = !finish && TryReadFinishReason(ref reader);
                    finish = true;
                }
                else if (reader.ValueTextEquals("prompt_tokens"u8))
                {
                    int? count = null;
                    ok = !prompt && TryReadCount(ref reader, out count);
                    PromptTokens = count;
                    prompt = true;
                }
                else if (reader.ValueTextEquals("cached_tokens"u8))
                {
                    int? count = null;
                    ok = !cached && TryReadCount(ref reader, out count);
                    CachedTokens = count;
                    cached = true;
                }
                else
                {
                    ok = false;
                }

                if (!ok)
                {
                    return false;
                }
            }

            // The root object ended, nothing but whitespace follows, and the one required field was there.
            return reader.TokenType == JsonTokenType.EndObject && !reader.Read() && tokens;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The serializer alone (the fallback).</summary>
    internal void ReadWithSerializer(ReadOnlySpan<byte> utf8) =>
        Set(JsonSerializer.Deserialize(utf8, WorkerJsonContext.Default.GenerateResponse) ?? throw new InvalidDataException("null generate response"));

    /// <summary>Takes the values of <paramref name="response"/>.</summary>
    internal void Set(GenerateResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        Clear();
        foreach (int id in response.TokenIds)
        {
            AddTokenId(id);
        }

        if (response.Logprobs is { } logprobs)
        {
            HasLogprobs = true;
            foreach (float l in logprobs)
            {
                AddLogprob(l);
            }
        }

        TopLogprobs = response.TopLogprobs;
        FinishReason = response.FinishReason;
        PromptTokens = response.PromptTokens;
        CachedTokens = response.CachedTokens;
        Prefill = response.Prefill;
    }

    /// <summary>The frame read last, as the serializer's object.</summary>
    internal GenerateResponse ToResponse() => new()
    {
        TokenIds = TokenIds.ToArray(),
        Logprobs = HasLogprobs ? Logprobs.ToArray() : null,
        TopLogprobs = TopLogprobs,
        FinishReason = FinishReason,
        PromptTokens = PromptTokens,
        CachedTokens = CachedTokens,
        Prefill = Prefill,
    };

    private void Clear()
    {
        _tokenCount = 0;
        _logprobCount = 0;
        HasLogprobs = false;
        TopLogprobs = null;
        FinishReason = null;
        PromptTokens = null;
        CachedTokens = null;
        Prefill = null;
    }

    private bool TryReadTokenIds(ref Utf8JsonReader reader)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            return false;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.Number)
        {
            if (!reader.TryGetInt32(out int id))
            {
                return false;
            }

            AddTokenId(id);
        }

        return reader.TokenType == JsonTokenType.EndArray;
    }

    private bool TryReadLogprobs(ref Utf8JsonReader reader)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
        {
            return false;
        }

        HasLogprobs = true;
        while (reader.Read() && reader.TokenType == JsonTokenType.Number)
        {
            if (!reader.TryGetSingle(out float logprob))
            {
                return false;
            }

            AddLogprob(logprob);
        }

        return reader.TokenType == JsonTokenType.EndArray;
    }

    private bool TryReadFinishReason(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            return false;
        }

        if (reader.TokenType == JsonTokenType.Null)
        {
            FinishReason = null;
            return true;
        }

        if (reader.TokenType != JsonTokenType.String)
        {
            return false;
        }

        FinishReason = reader.ValueTextEquals("stop"u8) ? "stop"
            : reader.ValueTextEquals("length"u8) ? "length"
            : reader.ValueTextEquals("cancelled"u8) ? "cancelled"
            : reader.GetString();
        return true;
    }

    private static bool TryReadCount(ref Utf8JsonReader reader, out int? count)
    {
        count = null;
        if (!reader.Read())
        {
            return false;
        }

        if (reader.TokenType == JsonTokenType.Null)
        {
            return true;
        }

        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int value))
        {
            return false;
        }

        count = value;
        return true;
    }

    private void AddTokenId(int id) => Append(ref _tokenIds, ref _tokenCount, id);

    private void AddLogprob(float logprob) => Append(ref _logprobs, ref _logprobCount, logprob);

    private static void Append<T>(ref T[] items, ref int count, T item)
    {
        if (count == items.Length)
        {
            Array.Resize(ref items, items.Length * 2);
        }

        items[count++] = item;
    }
}
