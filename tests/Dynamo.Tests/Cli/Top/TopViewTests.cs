using Dynamo.Cli.Top;
using Spectre.Console;

namespace Dynamo.Tests.Cli.Top;

public class TopViewTests
{
    private const string Exposition = MetricsScrapeTests.Exposition;

    [Fact]
    public void Render_TwoReads_RatesAndSharesAreOverTheInterval()
    {
        MetricsScrape before = MetricsScrape.Parse(Exposition, TimeSpan.Zero);
        MetricsScrape after = MetricsScrape.Parse(
            Exposition.Replace("worker_id=\"b2\"} 3", "worker_id=\"b2\"} 7", StringComparison.Ordinal)
                .Replace("instance=\"b2\"} 100", "instance=\"b2\"} 300", StringComparison.Ordinal)
                .Replace("stage=\"worker\"} 2", "stage=\"worker\"} 5", StringComparison.Ordinal)
                .Replace("output_tokens_total{worker_id=\"a1\"} 360", "output_tokens_total{worker_id=\"a1\"} 460", StringComparison.Ordinal),
            TimeSpan.FromSeconds(2));
        var output = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Out = new AnsiConsoleOutput(output) });
        console.Profile.Width = 200;

        console.Write(TopView.Render(new Uri("http://h:8000/"), before, after));

        string[] lines = output.ToString().Split('\n');
        Assert.Matches(@"^\s+a1\s+backend\s+m\s+2\s+1\s+25\.0\s+50\.0%\s+50\.0\s+9\s+0%\s*$", lines.Single(l => l.Contains(" a1 ", StringComparison.Ordinal)));
        Assert.Matches(@"^\s+b2\s+prefill\s+m\s+1\s+-\s+-\s+25\.0%\s+100\.0\s+7\s+100%\s*$", lines.Single(l => l.Contains(" b2 ", StringComparison.Ordinal)));
        Assert.Contains("queued 1 admission, 5 at workers", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("routed/s 2.0", output.ToString(), StringComparison.Ordinal);
    }
}
