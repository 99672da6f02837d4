namespace Dynamo.Load.Reports;

/// <summary>Mean and percentiles of a set of latencies (seconds); all zero with <see cref="Count"/> 0 when empty.</summary>
internal readonly record struct LatencySummary(int Count, double Mean, double P50, double P90, double P99)
{
    public static LatencySummary Of(IEnumerable<double> values)
    {
        double[] sorted = [.. values.Order()];
        if (sorted.Length == 0)
        {
            return default;
        }

        return new LatencySummary(sorted.Length, sorted.Average(), Percentile(sorted, 50), Percentile(sorted, 90), Percentile(sorted, 99));
    }

    /// <summary>
    /// The <paramref name="percent"/>th percentile of ascending <paramref name="sorted"/> values by linear
    /// interpolation between closest ranks (rank = p/100 × (n − 1), as numpy's default and vLLM's bench).
    /// </summary>
    public static double Percentile(ReadOnlySpan<double> sorted, double percent)
    {
        if (sorted.IsEmpty)
        {
            throw new ArgumentException("no values", nameof(sorted));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(percent, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 100);
        double rank = percent / 100 * (sorted.Length - 1);
        int lower = (int)Math.Floor(rank);
        int upper = Math.Min(lower + 1, sorted.Length - 1);
        return sorted[lower] + ((sorted[upper] - sorted[lower]) * (rank - lower));
    }
}
