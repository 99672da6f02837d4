using System.Text;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// The text rewriting done before splitting into words: Unicode normalization forms, a prepended marker
/// (SentencePiece's dummy prefix) and literal replacements (" " -> "▁"), applied in order.
/// </summary>
internal sealed class TextNormalizer
{
    private readonly IReadOnlyList<Func<string, string>> _steps;

    private TextNormalizer(IReadOnlyList<Func<string, string>> steps) => _steps = steps;

    public static TextNormalizer None { get; } = new([]);

    public bool IsIdentity => _steps.Count == 0;

    public static TextNormalizer Of(params Func<string, string>[] steps) => new(steps);

    public static TextNormalizer Sequence(IEnumerable<TextNormalizer> parts) => new(parts.SelectMany(p => p._steps).ToArray());

    /// <summary>Prepends <paramref name="prefix"/> to non-empty text (Hugging Face's Prepend, SentencePiece's dummy prefix).</summary>
    public static Func<string, string> Prepend(string prefix) => s => s.Length == 0 ? s : prefix + s;

    public static Func<string, string> Replace(string pattern, string content) => s => s.Replace(pattern, content, StringComparison.Ordinal);

    public static Func<string, string> UnicodeForm(NormalizationForm form) => s => s.IsNormalized(form) ? s : s.Normalize(form);

    public string Apply(string text)
    {
        foreach (var step in _steps)
        {
            text = step(text);
        }

        return text;
    }
}
