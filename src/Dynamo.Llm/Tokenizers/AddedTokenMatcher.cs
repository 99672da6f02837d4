namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Finds added tokens (special or not) spelled out in text, leftmost first and longest among those that
/// start at the same place, as Hugging Face's added vocabulary does.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, (string Content, int Id)[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<(string Content, int Id)> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Calls <paramref name="onText"/> for each stretch of plain text and <paramref name="onToken"/> for each added token, in order.</summary>
    public void Split(string text, Action<string> onText, Action<int> onToken)
    {
        int textStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates) && TryMatch(text, i, candidates, out var match))
            {
                if (i > textStart)
                {
                    onText(text[textStart..i]);
                }

                onToken(match.Id);
                i += match.Content.Length;
                textStart = i;
            }
            else
            {
                i++;
            }
        }

        if (textStart < text.Length)
        {
            onText(textStart == 0 ? text : text[textStart..]);
        }
    }

    private static bool TryMatch(string text, int at, (string Content, int Id)[] candidates, out (string Content, int Id) match)
    {
        foreach (var candidate in candidates)
        {
            if (at + candidate.Content.Length <= text.Length && string.CompareOrdinal(text, at, candidate.Content, 0, candidate.Content.Length) == 0)
            {
                match = candidate;
                return true;
            }
        }

        match = default;
        return false;
    }
}
