using Dynamo.Load.Client;
using ScottPlot;

namespace Dynamo.Load.Plot;

/// <summary>
/// Latency against request start time, drawn by ScottPlot: one point per request at (start s, latency s):
/// end-to-end in orange, TTFT in blue (drawn over it), failed requests (rejections and errors) in red at their
/// time to failure; axes from zero, a legend, a PNG of the size asked for.
/// </summary>
internal static class LatencyPlot
{
    public static Color TtftColor { get; } = new(30, 90, 220);

    public static Color EndToEndColor { get; } = new(240, 130, 0);

    public static Color FailedColor { get; } = new(220, 20, 20);

    /// <summary>The plot of <paramref name="results"/> as PNG bytes.</summary>
    public static byte[] RenderPng(IReadOnlyList<RequestResult> results, int width = 900, int height = 500) =>
        Create(results).GetImageBytes(width, height, ImageFormat.Png);

    /// <summary>Writes the plot of <paramref name="results"/> to <paramref name="path"/> as a PNG.</summary>
    public static void Write(string path, IReadOnlyList<RequestResult> results, int width = 900, int height = 500) =>
        File.WriteAllBytes(path, RenderPng(results, width, height));

    private static ScottPlot.Plot Create(IReadOnlyList<RequestResult> results)
    {
        var plot = new ScottPlot.Plot();
        RequestResult[] failed = [.. results.Where(r => r.Outcome != RequestOutcome.Ok)];
        RequestResult[] ok = [.. results.Where(r => r.Outcome == RequestOutcome.Ok)];
        RequestResult[] withTtft = [.. ok.Where(r => r.Ttft is not null)];
        Points(plot, failed.Select(r => r.Start), failed.Select(r => r.EndToEnd), FailedColor, "failed");
        Points(plot, ok.Select(r => r.Start), ok.Select(r => r.EndToEnd), EndToEndColor, "E2E");
        Points(plot, withTtft.Select(r => r.Start), withTtft.Select(r => r.Ttft!.Value), TtftColor, "TTFT");
        plot.XLabel("request start (s)");
        plot.YLabel("latency (s)");
        plot.ShowLegend(Alignment.UpperLeft);
        double xMax = results.Count == 0 ? 1 : results.Max(r => r.Start);
        double yMax = results.Count == 0 ? 1 : results.Max(r => Math.Max(r.EndToEnd, r.Ttft ?? 0));
        plot.Axes.SetLimits(0, Math.Max(xMax, 1e-3) * 1.05, 0, Math.Max(yMax, 1e-3) * 1.05);
        return plot;
    }

    private static void Points(ScottPlot.Plot plot, IEnumerable<double> xs, IEnumerable<double> ys, Color color, string name)
    {
        double[] x = [.. xs], y = [.. ys];
        if (x.Length == 0)
        {
            return;
        }

        ScottPlot.Plottables.Scatter scatter = plot.Add.ScatterPoints(x, y, color);
        scatter.MarkerSize = 6;
        scatter.MarkerShape = MarkerShape.FilledSquare;
        scatter.LegendText = name;
    }
}
