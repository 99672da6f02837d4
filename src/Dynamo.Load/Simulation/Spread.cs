namespace Dynamo.Load.Simulation;

/// <summary>How a quantity spreads over the workers: least, most, mean and (population) standard deviation.</summary>
internal readonly record struct Spread(double Min, double Max, double Mean, double StdDev)
{
    public static Spread Of(IEnumerable<double> values)
    {
        double[] all = [.. values];
        if (all.Length == 0)
        {
            return default;
        }

        double mean = all.Average();
        return new Spread(all.Min(), all.Max(), mean, Math.Sqrt(all.Sum(v => (v - mean) * (v - mean)) / all.Length));
    }
}
