using System.Text.RegularExpressions;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Splits text into words with one or more regular expressions applied in turn; matches and the text
/// between them both become words (Hugging Face's Split with behavior "Isolated", llama.cpp's regex lists).
/// </summary>
internal sealed class PreTokenizer
{
    /// <summary>GPT-2's pattern, the default for byte-level BPE.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's pattern (digits in groups of up to three).</summary>
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen 2/3's pattern (single digits).</summary>
    public const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly Regex[] _stages;

    public PreTokenizer(IEnumerable<string> patterns)
    {
        _stages = patterns.Select(p => new Regex(p, RegexOptions.Compiled | RegexOptions.CultureInvariant)).ToArray();
    }

    /// <summary>No splitting: the whole text is one word (SentencePiece-style models).</summary>
    public static PreTokenizer None { get; } = new([]);

    public void Split(string text, Action<string> onWord) => Split(text, 0, onWord);

    private void Split(string text, int stage, Action<string> onWord)
    {
        if (stage == _stages.Length)
        {
            onWord(text);
            return;
        }

        int last = 0;
        foreach (var match in _stages[stage].EnumerateMatches(text))
        {
            if (match.Length == 0)
            {
                continue;
            }

            if (match.Index > last)
            {
                Split(text[last..match.Index], stage + 1, onWord);
            }

            Split(text.Substring(match.Index, match.Length), stage + 1, onWord);
            last = match.Index + match.Length;
        }

        if (last < text.Length)
        {
            Split(last == 0 ? text : text[last..], stage + 1, onWord);
        }
    }
}
