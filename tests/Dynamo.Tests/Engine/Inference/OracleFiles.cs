using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>Readers for the reference files in ../shared/oracle.</summary>
internal static class OracleFiles
{
    /// <summary>The "key: value" lines of one [section] of a sectioned oracle text file.</summary>
    public static Dictionary<string, string> Section(string file, string section)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        bool inside = false;
        foreach (string line in File.ReadLines(SharedData.Path("oracle", file)))
        {
            if (line.StartsWith('['))
            {
                inside = line == $"[{section}]";
                continue;
            }

            int colon = line.IndexOf(": ", StringComparison.Ordinal);
            if (inside && colon > 0 && !line.StartsWith('#'))
            {
                result[line[..colon]] = line[(colon + 2)..];
            }
        }

        return result;
    }

    public static int[] Ids(string text) =>
        text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();

    public static string JsonString(string text) => JsonSerializer.Deserialize<string>(text)!;

    /// <summary>A raw float32 little-endian file.</summary>
    public static float[] Floats(string file)
    {
        byte[] bytes = File.ReadAllBytes(SharedData.Path("oracle", file));
        var result = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, result, 0, result.Length * 4);
        return result;
    }

    /// <summary>max |actual - expected| over a row divided by max |expected| in that row, worst row.</summary>
    public static double MaxRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, int width)
    {
        double worst = 0;
        for (int r = 0; r < expected.Length / width; r++)
        {
            double maxDiff = 0, maxRef = 0;
            for (int i = r * width; i < (r + 1) * width; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            }

            worst = Math.Max(worst, maxDiff / maxRef);
        }

        return worst;
    }
}
