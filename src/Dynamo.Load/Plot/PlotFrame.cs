namespace Dynamo.Load.Plot;

/// <summary>
/// Where data lands in a plot: the data range [0, <see cref="XMax"/>] × [0, <see cref="YMax"/>] maps onto
/// the pixel box from (<see cref="Left"/>, <see cref="Bottom"/>) to (<see cref="Right"/>, <see cref="Top"/>).
/// </summary>
internal sealed record PlotFrame(int Left, int Top, int Right, int Bottom, double XMax, double XStep, double YMax, double YStep)
{
    /// <summary>The pixel of data point (<paramref name="x"/>, <paramref name="y"/>), rounded to the nearest.</summary>
    public (int X, int Y) ToPixel(double x, double y) =>
        ((int)Math.Round(Left + (x / XMax * (Right - Left))), (int)Math.Round(Bottom - (y / YMax * (Bottom - Top))));

    /// <summary>A step of 1, 2 or 5 × 10^k giving about <paramref name="ticks"/> intervals up to <paramref name="max"/>.</summary>
    public static double NiceStep(double max, int ticks = 5)
    {
        if (!(max > 0) || double.IsInfinity(max))
        {
            return 1;
        }

        double raw = max / ticks;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double normal = raw / magnitude;
        double nice = normal <= 1 ? 1 : normal <= 2 ? 2 : normal <= 5 ? 5 : 10;
        return nice * magnitude;
    }

    /// <summary>The axis end: <paramref name="max"/> rounded up to a whole number of <paramref name="step"/>s (at least one step).</summary>
    public static double AxisMax(double max, double step) => Math.Max(step, Math.Ceiling((max / step) - 1e-9) * step);
}
