namespace Dynamo.Mocker;

/// <summary>
/// The mocker's stand-in for a model: output token <c>i</c> of a request is a hash of the engine seed, the
/// request's prompt (and its sampling seed, when it has one) and <c>i</c>, reduced to the vocabulary. The same
/// request gives the same tokens whatever else runs, like greedy decoding on a real engine.
/// </summary>
internal static class SyntheticTokens
{
    /// <summary>The per-request key the tokens derive from.</summary>
    public static ulong Key(ulong engineSeed, IReadOnlyList<int> prompt, ulong? samplingSeed)
    {
        ulong h = Mix(engineSeed ^ 0x9E3779B97F4A7C15UL);
        for (int i = 0; i < prompt.Count; i++)
        {
            h = Mix(h ^ (uint)prompt[i]);
        }

        return samplingSeed is { } s ? Mix(h ^ Mix(s + 0x632BE59BD9B4E019UL)) : h;
    }

    /// <summary>Output token <paramref name="index"/> (0 for the first generated token) of the request with <paramref name="key"/>.</summary>
    public static int Token(ulong key, int index, int vocabSize) => (int)(Mix(key + (ulong)index * 0x9E3779B97F4A7C15UL) % (ulong)vocabSize);

    /// <summary>SplitMix64's finaliser.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
