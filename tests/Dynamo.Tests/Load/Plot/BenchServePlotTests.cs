using Dynamo.Load.Client;
using Dynamo.Load.Plot;

namespace Dynamo.Tests.Load.Plot;

public class BenchServePlotTests
{
    private static byte[] Encode(RgbaImage image)
    {
        using var buffer = new MemoryStream();
        PngEncoder.Write(buffer, image);
        return buffer.ToArray();
    }

    private static (byte, byte, byte, byte) Tuple(Rgba c) => (c.R, c.G, c.B, c.A);

    [Fact]
    public void Write_SmallImage_ValidPngWithTheSamePixels()
    {
        var image = new RgbaImage(7, 3, Rgba.White);
        image.SetPixel(0, 0, new Rgba(1, 2, 3, 4));
        image.SetPixel(6, 2, Rgba.Black);
        image.SetPixel(7, 0, Rgba.Black);

        PngReader.Image png = PngReader.Read(Encode(image));

        Assert.Equal((7, 3), (png.Width, png.Height));
        Assert.Equal(["IHDR", "IDAT", "IEND"], png.Chunks);
        Assert.Equal(image.Pixels, png.Rgba);
        Assert.Equal(((byte)1, (byte)2, (byte)3, (byte)4), png[0, 0]);
    }

    [Fact]
    public void DrawLine_Diagonal_SetsEveryPixelOnIt()
    {
        var image = new RgbaImage(10, 10, Rgba.White);

        image.DrawLine(0, 0, 9, 9, Rgba.Black);

        Assert.All(Enumerable.Range(0, 10), i => Assert.Equal(Rgba.Black, image[i, i]));
        Assert.Equal(Rgba.White, image[1, 0]);
    }

    [Fact]
    public void DrawText_Digit1_MatchesTheGlyph()
    {
        var image = new RgbaImage(10, 10, Rgba.White);

        image.DrawText(1, 1, "1", Rgba.Black);

        string[] rows = ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."];
        for (int y = 0; y < 7; y++)
        {
            Assert.Equal(rows[y], new string([.. Enumerable.Range(0, 5).Select(x => image[1 + x, 1 + y] == Rgba.Black ? '#' : '.')]));
        }
    }

    [Theory]
    [InlineData(9.3, 2.0, 10.0)]
    [InlineData(0.42, 0.1, 0.5)]
    [InlineData(1.0, 0.2, 1.0)]
    [InlineData(0, 1, 1)]
    [InlineData(3600, 1000, 4000)]
    public void NiceStep_AboutFiveStepsOfOneTwoOrFive(double max, double step, double axisMax)
    {
        double s = PlotFrame.NiceStep(max);

        Assert.Equal(step, s, 9);
        Assert.Equal(axisMax, PlotFrame.AxisMax(max, s), 9);
    }

    [Fact]
    public void Render_Requests_PointsLandAtTheirStartAndLatency()
    {
        RequestResult[] results =
        [
            new() { Outcome = RequestOutcome.Ok, Start = 0.5, Ttft = 0.2, EndToEnd = 3.0, OutputTokens = 4 },
            new() { Outcome = RequestOutcome.Ok, Start = 4.0, Ttft = 1.0, EndToEnd = 7.6, OutputTokens = 4 },
            new() { Outcome = RequestOutcome.Rejected, Start = 8.0, EndToEnd = 5.0 },
        ];

        PngReader.Image png = PngReader.Read(Encode(LatencyPlot.Render(results, 600, 400)));
        PlotFrame f = LatencyPlot.Frame(results, 600, 400);

        Assert.Equal((600, 400), (png.Width, png.Height));
        Assert.Equal((8.0, 8.0), (f.XMax, f.YMax));
        Assert.Equal((f.Left, f.Bottom), f.ToPixel(0, 0));
        Assert.Equal((f.Right, f.Top), f.ToPixel(8, 8));
        foreach (RequestResult r in results.Where(r => r.Outcome == RequestOutcome.Ok))
        {
            (int x, int y) = f.ToPixel(r.Start, r.Ttft!.Value);
            Assert.Equal(Tuple(LatencyPlot.TtftColor), png[x, y]);
            (x, y) = f.ToPixel(r.Start, r.EndToEnd);
            Assert.Equal(Tuple(LatencyPlot.EndToEndColor), png[x, y]);
            Assert.Equal(Tuple(LatencyPlot.EndToEndColor), png[x + 2, y - 2]);
            Assert.NotEqual(Tuple(LatencyPlot.EndToEndColor), png[x + 4, y]);
        }

        (int fx, int fy) = f.ToPixel(8.0, 5.0);
        Assert.Equal(Tuple(LatencyPlot.FailedColor), png[fx, fy]);
        Assert.Equal(Tuple(Rgba.Black), png[f.Left, (f.Top + f.Bottom) / 2]);
        Assert.Equal(Tuple(Rgba.Black), png[(f.Left + f.Right) / 2, f.Bottom]);
    }

    [Fact]
    public void Render_NoRequests_StillAValidImage()
    {
        PngReader.Image png = PngReader.Read(Encode(LatencyPlot.Render([], 300, 200)));

        Assert.Equal((300, 200), (png.Width, png.Height));
    }
}
