using System.Text;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Unicode NFC and NFD from <see cref="UnicodeNormalizationData"/>, because <see cref="string.Normalize()"/>
/// does nothing under InvariantGlobalization (which this build uses). Follows UAX #15: full canonical
/// decomposition (Hangul algorithmically), canonical ordering, then canonical composition for NFC.
/// </summary>
internal static class CanonicalNormalizer
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, int> Ccc = Pairs(UnicodeNormalizationData.CombiningClasses);
    private static readonly Dictionary<int, (int First, int Second)> Decomposition = BuildDecompositions();
    private static readonly Dictionary<long, int> Composition = BuildCompositions();

    /// <summary>Text below U+0300 is already in NFC and NFD except for precomposed Latin-1 letters under NFD.</summary>
    public static string ToNfc(string text) => IsTrivial(text, 0x300) ? text : Normalize(text, compose: true);

    public static string ToNfd(string text) => IsTrivial(text, 0xC0) ? text : Normalize(text, compose: false);

    private static bool IsTrivial(string text, int limit)
    {
        foreach (char c in text)
        {
            if (c >= limit)
            {
                return false;
            }
        }

        return true;
    }

    private static string Normalize(string text, bool compose)
    {
        var cps = new List<int>(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            Decompose(rune.Value, cps);
        }

        for (int i = 1; i < cps.Count; i++)
        {
            int ccc = CombiningClass(cps[i]);
            if (ccc == 0)
            {
                continue;
            }

            for (int j = i; j > 0 && CombiningClass(cps[j - 1]) > ccc; j--)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
            }
        }

        if (compose)
        {
            Compose(cps);
        }

        var result = new StringBuilder(cps.Count);
        foreach (int cp in cps)
        {
            result.Append(new Rune(cp).ToString());
        }

        return result.ToString();
    }

    private static void Decompose(int cp, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
            {
                output.Add(TBase + s % TCount);
            }

            return;
        }

        if (Decomposition.TryGetValue(cp, out var d))
        {
            Decompose(d.First, output);
            if (d.Second != 0)
            {
                Decompose(d.Second, output);
            }

            return;
        }

        output.Add(cp);
    }

    private static void Compose(List<int> cps)
    {
        int starter = -1;
        int lastCcc = 0;
        int write = 0;
        for (int read = 0; read < cps.Count; read++)
        {
            int cp = cps[read];
            int ccc = CombiningClass(cp);
            bool blocked = starter < 0 || (write - 1 != starter && (lastCcc == 0 || lastCcc >= ccc));
            if (!blocked && TryCompose(cps[starter], cp, out int composite))
            {
                cps[starter] = composite;
                continue;
            }

            if (ccc == 0)
            {
                starter = write;
            }

            lastCcc = ccc;
            cps[write++] = cp;
        }

        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(int first, int second, out int composite)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + second - VBase) * TCount;
            return true;
        }

        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0 && second is > TBase and < TBase + TCount)
        {
            composite = first + second - TBase;
            return true;
        }

        return Composition.TryGetValue(((long)first << 32) | (uint)second, out composite);
    }

    private static int CombiningClass(int cp) => Ccc.TryGetValue(cp, out int c) ? c : 0;

    private static Dictionary<int, int> Pairs(int[] flat)
    {
        var map = new Dictionary<int, int>(flat.Length / 2);
        for (int i = 0; i < flat.Length; i += 2)
        {
            map[flat[i]] = flat[i + 1];
        }

        return map;
    }

    private static Dictionary<int, (int, int)> BuildDecompositions()
    {
        var flat = UnicodeNormalizationData.Decompositions;
        var map = new Dictionary<int, (int, int)>(flat.Length / 3);
        for (int i = 0; i < flat.Length; i += 3)
        {
            map[flat[i]] = (flat[i + 1], flat[i + 2]);
        }

        return map;
    }

    private static Dictionary<long, int> BuildCompositions()
    {
        var flat = UnicodeNormalizationData.Compositions;
        var map = new Dictionary<long, int>(flat.Length / 3);
        for (int i = 0; i < flat.Length; i += 3)
        {
            map[((long)flat[i] << 32) | (uint)flat[i + 1]] = flat[i + 2];
        }

        return map;
    }
}
