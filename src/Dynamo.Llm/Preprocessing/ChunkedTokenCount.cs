using Dynamo.Llm.Tokenizers;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Decides early that a long input cannot fit the context, without tokenizing all of it: the text is
/// encoded in chunks of about <see cref="ChunkChars"/> characters, cut before a space or newline, and
/// counting stops as soon as the count is past the limit by more than <see cref="SlackPerChunk"/> tokens per
/// chunk. The slack covers what a cut can change (a word or special token split in two, a dummy prefix
/// per chunk), so an input it refuses does not fit; an input it does not refuse is tokenized whole as
/// usual. Memory stays at one chunk's worth however long the input is.
/// </summary>
internal static class ChunkedTokenCount
{
    /// <summary>Characters per chunk.</summary>
    public const int ChunkChars = 16 * 1024;

    /// <summary>Tokens a chunk's cut may add to the count.</summary>
    public const int SlackPerChunk = 16;

    /// <summary>Inputs averaging more characters per token than this are rare: texts longer than context x this are counted in chunks first.</summary>
    public const int LikelyMaxCharsPerToken = 8;

    /// <summary>
    /// Whether <paramref name="texts"/> certainly have more than <paramref name="limit"/> tokens: then the
    /// tokens and characters counted when it stopped; null when counting reached the end without being sure.
    /// </summary>
    public static (long Tokens, long Chars)? CountPast(ITokenizer tokenizer, IEnumerable<string> texts, long limit)
    {
        long tokens = 0;
        long chars = 0;
        long chunks = 0;
        foreach (string text in texts)
        {
            int start = 0;
            while (start < text.Length)
            {
                int end = Cut(text, start);
                tokens += tokenizer.Encode(text[start..end], addSpecialTokens: false).Count;
                chars += end - start;
                chunks++;
                if (tokens - (SlackPerChunk * chunks) > limit)
                {
                    return (tokens, chars);
                }

                start = end;
            }
        }

        return null;
    }

    /// <summary>The end of the chunk starting at <paramref name="start"/>: before the last space or newline of its last quarter, else at the length (never inside a surrogate pair).</summary>
    private static int Cut(string text, int start)
    {
        if (text.Length - start <= ChunkChars)
        {
            return text.Length;
        }

        int end = start + ChunkChars;
        int space = text.AsSpan(end - (ChunkChars / 4), ChunkChars / 4).LastIndexOfAny(' ', '\n');
        if (space > 0)
        {
            return end - (ChunkChars / 4) + space;
        }

        return char.IsLowSurrogate(text[end]) ? end - 1 : end;
    }
}
