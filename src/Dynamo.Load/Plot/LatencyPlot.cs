using System.Globalization;
using Dynamo.Load.Client;

namespace Dynamo.Load.Plot;

/// <summary>
/// Latency against request start time: one point per request at (start s, latency s): end-to-end in
/// orange, TTFT in blue (drawn over it), failed requests (rejections and errors) in red at their time to
/// failure. Axes from zero with 1/2/5 ticks, light grid, labels in <see cref="BitmapFont"/>.
/// </summary>
internal static class LatencyPlot
{
    public static Rgba TtftColor => new(30, 90, 220);

    public static Rgba EndToEndColor => new(240, 130, 0);

    public static Rgba FailedColor => new(220, 20, 20);

    private const int MarginLeft = 70, MarginRight = 20, MarginTop = 40, MarginBottom = 50;

    /// <summary>The frame a plot of <paramref name="results"/> uses at this size.</summary>
    public static PlotFrame Frame(IReadOnlyList<RequestResult> results, int width, int height)
    {
        double xData = results.Count == 0 ? 0 : results.Max(r => r.Start);
        double yData = results.Count == 0 ? 0 : results.Max(r => Math.Max(r.EndToEnd, r.Ttft ?? 0));
        double xStep = PlotFrame.NiceStep(xData), yStep = PlotFrame.NiceStep(yData);
        return new PlotFrame(MarginLeft, MarginTop, width - MarginRight, height - MarginBottom,
            PlotFrame.AxisMax(xData, xStep), xStep, PlotFrame.AxisMax(yData, yStep), yStep);
    }

    public static RgbaImage Render(IReadOnlyList<RequestResult> results, int width = 900, int height = 500)
    {
        var image = new RgbaImage(width, height, Rgba.White);
        PlotFrame f = Frame(results, width, height);
        var grid = new Rgba(225, 225, 225);
        int xDecimals = Decimals(f.XStep), yDecimals = Decimals(f.YStep);
        for (int i = 0; i * f.XStep <= f.XMax + (f.XStep / 2); i++)
        {
            double v = i * f.XStep;
            (int x, _) = f.ToPixel(v, 0);
            image.DrawLine(x, f.Top, x, f.Bottom, grid);
            image.DrawLine(x, f.Bottom, x, f.Bottom + 4, Rgba.Black);
            string label = v.ToString("F" + xDecimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            image.DrawText(x - (RgbaImage.TextWidth(label) / 2), f.Bottom + 8, label, Rgba.Black);
        }

        for (int i = 0; i * f.YStep <= f.YMax + (f.YStep / 2); i++)
        {
            double v = i * f.YStep;
            (_, int y) = f.ToPixel(0, v);
            image.DrawLine(f.Left, y, f.Right, y, grid);
            image.DrawLine(f.Left - 4, y, f.Left, y, Rgba.Black);
            string label = v.ToString("F" + yDecimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            image.DrawText(f.Left - 8 - RgbaImage.TextWidth(label), y - (BitmapFont.Height / 2), label, Rgba.Black);
        }

        image.DrawLine(f.Left, f.Top, f.Left, f.Bottom, Rgba.Black);
        image.DrawLine(f.Left, f.Bottom, f.Right, f.Bottom, Rgba.Black);
        const string xTitle = "REQUEST START (S)";
        image.DrawText(((f.Left + f.Right) / 2) - (RgbaImage.TextWidth(xTitle, 2) / 2), height - 20, xTitle, Rgba.Black, scale: 2);
        image.DrawText(8, 12, "LATENCY (S)", Rgba.Black, scale: 2);
        int legend = f.Right - 260;
        foreach ((string name, Rgba color) in new[] { ("TTFT", TtftColor), ("E2E", EndToEndColor), ("FAILED", FailedColor) })
        {
            image.FillRect(legend, 14, 10, 10, color);
            image.DrawText(legend + 14, 12, name, Rgba.Black, scale: 2);
            legend += 34 + RgbaImage.TextWidth(name, 2);
        }

        foreach (RequestResult r in results.Where(r => r.Outcome != RequestOutcome.Ok))
        {
            Point(image, f, r.Start, r.EndToEnd, FailedColor);
        }

        foreach (RequestResult r in results.Where(r => r.Outcome == RequestOutcome.Ok))
        {
            Point(image, f, r.Start, r.EndToEnd, EndToEndColor);
        }

        foreach (RequestResult r in results.Where(r => r.Outcome == RequestOutcome.Ok && r.Ttft is not null))
        {
            Point(image, f, r.Start, r.Ttft!.Value, TtftColor);
        }

        return image;
    }

    /// <summary>A 5×5 square centred on the point.</summary>
    private static void Point(RgbaImage image, PlotFrame f, double x, double y, Rgba color)
    {
        (int px, int py) = f.ToPixel(x, y);
        image.FillRect(px - 2, py - 2, 5, 5, color);
    }

    private static int Decimals(double step) => Math.Clamp(-(int)Math.Floor(Math.Log10(step) + 1e-9), 0, 6);
}
