using Dynamo.Load.Client;
using Dynamo.Load.Plot;
using SkiaSharp;

namespace Dynamo.Tests.Load.Plot;

/// <summary><c>bench serve --plot</c>'s picture (ScottPlot): a PNG of the size asked for, with each series drawn in its colour.</summary>
public class BenchServePlotTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private static SKBitmap Decode(byte[] png)
    {
        Assert.Equal(PngSignature, png[..8]);
        return SKBitmap.Decode(png) ?? throw new InvalidDataException("not a decodable PNG");
    }

    private static bool Shows(SKBitmap bitmap, ScottPlot.Color color)
    {
        for (int y = 0; y < bitmap.Height; y++)
        {
            for (int x = 0; x < bitmap.Width; x++)
            {
                SKColor p = bitmap.GetPixel(x, y);
                if (Math.Abs(p.Red - color.R) <= 4 && Math.Abs(p.Green - color.G) <= 4 && Math.Abs(p.Blue - color.B) <= 4)
                {
                    return true;
                }
            }
        }

        return false;
    }

    [Fact]
    public void RenderPng_Requests_PngOfTheRequestedSizeWithEverySeriesDrawn()
    {
        RequestResult[] results =
        [
            new() { Outcome = RequestOutcome.Ok, Start = 0.5, Ttft = 0.2, EndToEnd = 3.0, OutputTokens = 4 },
            new() { Outcome = RequestOutcome.Ok, Start = 4.0, Ttft = 1.0, EndToEnd = 7.6, OutputTokens = 4 },
            new() { Outcome = RequestOutcome.Rejected, Start = 8.0, EndToEnd = 5.0 },
        ];

        using SKBitmap png = Decode(LatencyPlot.RenderPng(results, 600, 400));

        Assert.Equal((600, 400), (png.Width, png.Height));
        Assert.True(Shows(png, LatencyPlot.TtftColor), "no TTFT point");
        Assert.True(Shows(png, LatencyPlot.EndToEndColor), "no end-to-end point");
        Assert.True(Shows(png, LatencyPlot.FailedColor), "no failed point");
        SKColor background = png.GetPixel(0, 0);
        Assert.True(Enumerable.Range(0, png.Width).Count(x => png.GetPixel(x, png.Height / 2) != background) > 2, "the middle row is all background");
    }

    [Fact]
    public void RenderPng_NoRequests_StillAValidImageWithAxes()
    {
        using SKBitmap png = Decode(LatencyPlot.RenderPng([], 300, 200));

        Assert.Equal((300, 200), (png.Width, png.Height));
        Assert.False(Shows(png, LatencyPlot.TtftColor));
        SKColor background = png.GetPixel(0, 0);
        Assert.Contains(Enumerable.Range(0, png.Height), y => png.GetPixel(png.Width / 2, y) != background);
    }

    [Fact]
    public void Write_Path_WritesTheSamePng()
    {
        string path = Path.Combine(Path.GetTempPath(), $"dynamo-plot-{Guid.NewGuid():N}.png");
        RequestResult[] results = [new() { Outcome = RequestOutcome.Ok, Start = 1, Ttft = 0.5, EndToEnd = 2, OutputTokens = 3 }];

        LatencyPlot.Write(path, results, 320, 240);

        using SKBitmap png = Decode(File.ReadAllBytes(path));
        Assert.Equal((320, 240), (png.Width, png.Height));
        File.Delete(path);
    }
}
