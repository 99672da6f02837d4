namespace Dynamo.Llm.Engines;

/// <summary>
/// How the next token is chosen and when generation stops. Defaults are OpenAI's (temperature 1, no
/// truncation, no penalties). Temperature 0 means greedy. Validated by <see cref="Validate"/>, whose
/// messages name the field.
/// </summary>
public sealed record SamplingParams
{
    public static SamplingParams Default { get; } = new();

    /// <summary>Greedy decoding: always the most likely token.</summary>
    public static SamplingParams Greedy { get; } = new() { Temperature = 0 };

    public float Temperature { get; init; } = 1f;
    /// <summary>Keep only the k most likely tokens; 0 or less means all.</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p.</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens whose probability is below min_p times the top token's.</summary>
    public float MinP { get; init; }
    /// <summary>Makes sampling reproducible; null draws a random seed.</summary>
    public ulong? Seed { get; init; }
    /// <summary>Hugging Face style: logits of tokens seen in the prompt or output are divided (if positive) or multiplied by it.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>OpenAI style: subtracted once per occurrence of a token in the output.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>OpenAI style: subtracted once for any token present in the output.</summary>
    public float PresencePenalty { get; init; }
    public int MaxTokens { get; init; } = 256;
    /// <summary>Generate past the end-of-sequence token(s).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Extra token ids that end generation (the token itself is not part of the text).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Strings that end generation; the text is cut before them and they never appear in the output.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Return the log-probability of each chosen token.</summary>
    public bool Logprobs { get; init; }
    /// <summary>With <see cref="Logprobs"/>, this many most likely alternatives per position (0-20).</summary>
    public int TopLogprobs { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first out-of-range field.</summary>
    public SamplingParams Validate()
    {
        static void Check(bool ok, string field, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{field}: {message}", field);
            }
        }

        Check(float.IsFinite(Temperature) && Temperature is >= 0 and <= 2, "temperature", $"{Temperature} is outside 0..2");
        Check(float.IsFinite(TopP) && TopP is > 0 and <= 1, "top_p", $"{TopP} is outside (0, 1]");
        Check(float.IsFinite(MinP) && MinP is >= 0 and <= 1, "min_p", $"{MinP} is outside 0..1");
        Check(TopK >= -1, "top_k", $"{TopK} must be -1, 0 (all) or positive");
        Check(float.IsFinite(RepetitionPenalty) && RepetitionPenalty is > 0 and <= 2, "repetition_penalty", $"{RepetitionPenalty} is outside (0, 2]");
        Check(float.IsFinite(FrequencyPenalty) && FrequencyPenalty is >= -2 and <= 2, "frequency_penalty", $"{FrequencyPenalty} is outside -2..2");
        Check(float.IsFinite(PresencePenalty) && PresencePenalty is >= -2 and <= 2, "presence_penalty", $"{PresencePenalty} is outside -2..2");
        Check(MaxTokens >= 1, "max_tokens", $"{MaxTokens} must be at least 1");
        Check(TopLogprobs is >= 0 and <= 20, "top_logprobs", $"{TopLogprobs} is outside 0..20");
        Check(Stop.All(s => s.Length > 0), "stop", "stop strings must not be empty");
        return this;
    }
}
