using System.Text;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// The output side of one choice: worker responses in, OpenAI text out. Detokenizes incrementally (no
/// broken characters), cuts at the first stop string (which never reaches the client), formats log
/// probabilities and maps the finish reason. Once <see cref="IsFinished"/>, the caller stops reading the
/// worker (which cancels the rest of the generation). Not thread-safe: one per choice.
/// </summary>
public sealed class ChoicePostprocessor
{
    /// <summary>What non-finite log probabilities are sent as (JSON has no -Infinity).</summary>
    public const float MinLogprob = -9999f;

    private readonly ITokenizer _tokenizer;
    private readonly IncrementalDetokenizer _detokenizer;
    private readonly StopStringMatcher _stops;
    private readonly bool _logprobs;
    private int _textLength;

    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="promptIds">The prompt (for position-dependent decoding rules; not returned).</param>
    /// <param name="stopStrings">Strings that end the choice.</param>
    /// <param name="logprobs">Whether log probabilities are returned.</param>
    public ChoicePostprocessor(ITokenizer tokenizer, IReadOnlyList<int> promptIds, IReadOnlyList<string> stopStrings, bool logprobs)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _detokenizer = new IncrementalDetokenizer(tokenizer, skipSpecialTokens: true, promptIds);
        _stops = new StopStringMatcher(stopStrings);
        _logprobs = logprobs;
    }

    /// <summary>Tokens received from the worker (up to the stop string, when one ended the choice).</summary>
    public int CompletionTokens { get; private set; }

    /// <summary>Prompt tokens as the worker counted them (0 until its last response).</summary>
    public int PromptTokens { get; private set; }

    /// <summary>Prompt tokens the worker found in its prefix cache.</summary>
    public int CachedTokens { get; private set; }

    /// <summary>"stop" or "length" once finished.</summary>
    public string? FinishReason { get; private set; }

    /// <summary>True once the choice is complete.</summary>
    public bool IsFinished => FinishReason is not null;

    /// <summary>Applies one worker response.</summary>
    public ChoiceDelta Push(GenerateResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (IsFinished)
        {
            return new ChoiceDelta("", null, _textLength, FinishReason);
        }

        int offset = _textLength;
        var text = new StringBuilder();
        List<ChatTokenLogprob>? logprobs = _logprobs ? new List<ChatTokenLogprob>(response.TokenIds.Count) : null;
        for (int i = 0; i < response.TokenIds.Count; i++)
        {
            int id = response.TokenIds[i];
            CompletionTokens++;
            text.Append(_stops.Push(_detokenizer.Push(id)));
            logprobs?.Add(Logprob(id, response.Logprobs is { } l && i < l.Count ? l[i] : 0f, response.TopLogprobs is { } t && i < t.Count ? t[i] : null));
            if (_stops.Stopped)
            {
                FinishReason = "stop";
                break;
            }
        }

        if (response.PromptTokens is int prompt)
        {
            PromptTokens = prompt;
        }

        if (response.CachedTokens is int cached)
        {
            CachedTokens = cached;
        }

        if (!IsFinished && response.FinishReason is string reason)
        {
            text.Append(_stops.Push(_detokenizer.Flush()));
            text.Append(_stops.Flush());
            FinishReason = reason == "length" ? "length" : "stop";
        }

        _textLength += text.Length;
        return new ChoiceDelta(text.ToString(), logprobs, offset, FinishReason);
    }

    /// <summary>Completions-style log probabilities from chat-style entries.</summary>
    public static CompletionLogprobs ToCompletionLogprobs(IReadOnlyList<(ChatTokenLogprob Entry, int TextOffset)> entries, bool withTop)
    {
        ArgumentNullException.ThrowIfNull(entries);
        return new CompletionLogprobs
        {
            Tokens = [.. entries.Select(e => e.Entry.Token)],
            TokenLogprobs = [.. entries.Select(e => e.Entry.Logprob)],
            TopLogprobs = withTop
                ? [.. entries.Select(e => (IReadOnlyDictionary<string, float>)e.Entry.TopLogprobs.DistinctBy(t => t.Token).ToDictionary(t => t.Token, t => t.Logprob))]
                : null,
            TextOffset = [.. entries.Select(e => e.TextOffset)],
        };
    }

    private ChatTokenLogprob Logprob(int id, float logprob, IReadOnlyList<GenerateTopLogprob>? top)
    {
        (string token, int[] bytes) = Piece(id);
        return new ChatTokenLogprob
        {
            Token = token,
            Logprob = Finite(logprob),
            Bytes = bytes,
            TopLogprobs = top is null ? [] : [.. top.Select(t =>
            {
                (string tt, int[] tb) = Piece(t.TokenId);
                return new ChatTopLogprob { Token = tt, Logprob = Finite(t.Logprob), Bytes = tb };
            })],
        };
    }

    private (string Token, int[] Bytes) Piece(int id)
    {
        byte[]? raw = (_tokenizer as BpeTokenizer)?.PieceBytes(id);
        string token = _tokenizer.Decode([id], skipSpecialTokens: false);
        raw ??= Encoding.UTF8.GetBytes(token);
        return (token, [.. raw.Select(b => (int)b)]);
    }

    private static float Finite(float value) => float.IsFinite(value) ? value : MinLogprob;
}
