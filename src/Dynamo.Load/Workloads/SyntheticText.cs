using System.Text;

namespace Dynamo.Load.Workloads;

/// <summary>
/// Prompt text made of short common English words. Each word with its leading space is about one
/// token for the BPE tokenizers of Llama-family models, so N words is the estimate of N tokens; a
/// byte-level tokenizer sees about five tokens per word. The server's usage chunk gives the true
/// count, which the report shows.
/// </summary>
internal static class SyntheticText
{
    private static readonly string[] s_words =
    [
        "the", "of", "and", "to", "in", "is", "it", "for", "on", "was", "with", "he", "as", "at", "by", "this",
        "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were", "her",
        "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more",
        "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only",
        "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my",
        "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did",
        "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
        "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good",
        "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between",
        "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last",
        "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right",
        "used", "take", "three", "water", "house", "light", "river", "stone", "green", "city", "music",
    ];

    /// <summary>Appends <paramref name="count"/> words drawn from <paramref name="random"/>, space-separated.</summary>
    public static void AppendWords(StringBuilder text, Random random, int count)
    {
        for (int i = 0; i < count; i++)
        {
            if (text.Length > 0)
            {
                text.Append(' ');
            }

            text.Append(s_words[random.Next(s_words.Length)]);
        }
    }

    /// <summary><paramref name="count"/> random words as one string.</summary>
    public static string Words(Random random, int count)
    {
        var text = new StringBuilder(count * 5);
        AppendWords(text, random, count);
        return text.ToString();
    }

    /// <summary>
    /// The words of one trace block: the same for the same (<paramref name="seed"/>, <paramref name="hashId"/>)
    /// in every run and every request, so equal hash ids give identical text.
    /// </summary>
    public static string[] Block(int seed, long hashId, int count) => [.. BlockTokens(seed, hashId, count).Select(WordOf)];

    /// <summary>
    /// <see cref="Block"/> as token ids, one per word (<see cref="TokenOf"/>): the same draws, so the ids spell the
    /// block's words exactly. Token-id prompts of traces (<c>trace-tokens:FILE</c>) and the simulator use these.
    /// </summary>
    public static int[] BlockTokens(int seed, long hashId, int count)
    {
        ulong mix = unchecked(((ulong)hashId * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)seed * 0xC2B2AE3D27D4EB4FUL));
        mix ^= mix >> 31;
        var random = new Random(unchecked((int)(mix ^ (mix >> 32))));
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = FirstToken + random.Next(s_words.Length);
        }

        return tokens;
    }

    /// <summary>The token id of a prompt word here: <see cref="FirstToken"/> + its place in the word list (ids present in every vocabulary this project serves).</summary>
    public static int TokenOf(string word)
    {
        int i = Array.IndexOf(s_words, word);
        if (i >= 0)
        {
            return FirstToken + i;
        }

        // Another word: one of 64 ids after the list, by a hash that is the same in every process (FNV-1a).
        uint hash = 2166136261;
        foreach (char c in word)
        {
            hash = unchecked((hash ^ c) * 16777619);
        }

        return FirstToken + s_words.Length + (int)(hash % 64);
    }

    /// <summary>A text made of these words as token ids, one per space-separated word (the simulator's tokenizer: about one token per word, as Llama-family BPE tokenizers give).</summary>
    public static int[] Tokens(string text) => [.. text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(TokenOf)];

    /// <summary>The first token id of the word list.</summary>
    public const int FirstToken = 100;

    private static string WordOf(int token) => s_words[token - FirstToken];
}
