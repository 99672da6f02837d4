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
    private readonly StringBuilder _text = new();
    private GenerateResponseReader? _adapter;
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
        _adapter ??= new GenerateResponseReader();
        _adapter.Set(response);
        return Push(_adapter);
    }

    /// <summary>
    /// Applies the worker response <paramref name="frame"/> holds. Without log probabilities it allocates only
    /// the delta's text (nothing when the text is empty).
    /// </summary>
    internal ChoiceDelta Push(GenerateResponseReader frame)
    {
        if (IsFinished)
        {
            return new ChoiceDelta("", null, _textLength, FinishReason);
        }

        int offset = _textLength;
        ReadOnlySpan<int> ids = frame.TokenIds;
        ReadOnlySpan<float> logprobValues = frame.Logprobs;
        IReadOnlyList<IReadOnlyList<GenerateTopLogprob>>? top = frame.TopLogprobs;
        _text.Clear();
        List<ChatTokenLogprob>? logprobs = _logprobs ? new List<ChatTokenLogprob>(ids.Length) : null;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            bool stopped = Take(id);
            logprobs?.Add(Logprob(id, i < logprobValues.Length ? logprobValues[i] : 0f, top is not null && i < top.Count ? top[i] : null));
            if (stopped)
            {
                break;
            }
        }

        if (frame.PromptTokens is int prompt)
        {
            PromptTokens = prompt;
        }

        if (frame.CachedTokens is int cached)
        {
            CachedTokens = cached;
        }

        if (!IsFinished && frame.FinishReason is string reason)
        {
            _stops.Push(_detokenizer.FlushSpan(), _text);
            _stops.Flush(_text);
            FinishReason = reason == "length" ? "length" : "stop";
        }

        _textLength += _text.Length;
        return new ChoiceDelta(_text.Length == 0 ? "" : _text.ToString(), logprobs, offset, FinishReason);
    }

    /// <summary>
    /// Takes <paramref name="ids"/> as output the client already has (streamed by an attempt that failed
    /// mid-stream, <c>resumed_output_tokens</c>): afterwards the detokenizer (a character whose bytes are not
    /// all there yet), the text held back as a possible stop string, the token count and the text offset are
    /// exactly as if they had been pushed, so the next <see cref="Push(GenerateResponse)"/> continues the text the
    /// client has without a repeated or missing character. Returns nothing; call before the first push.
    /// </summary>
    public void Replay(ReadOnlySpan<int> ids)
    {
        _text.Clear();
        foreach (int id in ids)
        {
            if (Take(id))
            {
                break;
            }
        }

        _textLength += _text.Length;
        _text.Clear();
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

    /// <summary>One output token through the detokenizer and the stop strings into <c>_text</c>; true when it completed a stop string.</summary>
    private bool Take(int id)
    {
        CompletionTokens++;
        _stops.Push(_detokenizer.PushSpan(id), _text);
        if (_stops.Stopped)
        {
            FinishReason = "stop";
            return true;
        }

        return false;
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
