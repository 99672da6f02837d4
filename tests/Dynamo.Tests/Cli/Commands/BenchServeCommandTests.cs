using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Tests.Load.Client;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

public class BenchServeCommandTests
{
    private static string TempFile(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-bench-serve-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    [Fact]
    public async Task BenchServe_Json_OneObjectOnStdoutWithEveryFigure()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (i, _) => i == 3 ? new FakeReply { Status = 429 } : new FakeReply();

        CliProcess.Result r = CliProcess.Run(["bench", "serve", "--url", server.Url, "--model", "fake", "--concurrency", "2", "--num-prompts", "8", "--input-len", "12", "--output-len", "5", "--json", "--no-warmup"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("fake", root.GetProperty("config").GetProperty("model").GetString());
        Assert.Equal("random", root.GetProperty("config").GetProperty("workload").GetString());
        Assert.Equal(2, root.GetProperty("config").GetProperty("concurrency").GetInt32());
        Assert.Equal(8, root.GetProperty("requests").GetInt32());
        Assert.Equal(7, root.GetProperty("completed").GetInt32());
        Assert.Equal(1, root.GetProperty("rejected").GetInt32());
        Assert.Equal(0, root.GetProperty("errors").GetInt32());
        Assert.Equal(35, root.GetProperty("output_tokens").GetInt32());
        Assert.True(root.GetProperty("output_tokens_per_second").GetDouble() > 0);
        Assert.True(root.GetProperty("requests_per_second").GetDouble() > 0);
        foreach (string name in new[] { "ttft_ms", "itl_ms", "e2e_ms" })
        {
            JsonElement s = root.GetProperty(name);
            Assert.True(s.GetProperty("p99").GetDouble() >= s.GetProperty("p50").GetDouble(), name);
        }

        Assert.Equal(7, root.GetProperty("e2e_ms").GetProperty("count").GetInt32());
        Assert.Equal("HTTP 429: fake status 429", Assert.Single(root.GetProperty("error_messages").EnumerateArray()).GetString());
        Assert.DoesNotContain("[#", r.Stderr);
        Assert.Equal(8, server.Requests.Count);
    }

    [Fact]
    public async Task BenchServe_TableAndPlot_TableOnStdoutPngWritten()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        string plot = TempFile("latency.png");

        CliProcess.Result r = CliProcess.Run(["bench", "serve", "--url", server.Url, "--model", "fake", "--concurrency", "3", "--num-prompts", "6", "--output-len", "3", "--workload", "shared-prefix", "--plot", plot]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("workload shared-prefix, concurrency 3, 6 requests", r.Stdout);
        Assert.Contains("completed 6, rejected 0 (HTTP 429/503), errors 0", r.Stdout);
        Assert.Matches(new Regex(@"^\| TTFT \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \| 6 \|$", RegexOptions.Multiline), r.Stdout);
        using SkiaSharp.SKBitmap png = SkiaSharp.SKBitmap.Decode(File.ReadAllBytes(plot));
        Assert.Equal((900, 500), (png.Width, png.Height));
        Assert.Contains("warm-up request ok", r.Stderr);
        Assert.Equal(7, server.Requests.Count);
        Assert.Equal("Warm-up request: say hello.", server.Requests.Single(q => q.Index == 0).Body.GetProperty("messages")[0].GetProperty("content").GetString());
        Assert.Equal(6, server.Requests.Where(q => q.Index > 0).Select(q => q.Body.GetProperty("messages")[0].GetProperty("content").GetString()).Distinct().Count());
    }

    [Fact]
    public async Task BenchServe_Trace_ReplaysTheFileWithCaps()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        string trace = TempFile("trace.jsonl");
        File.WriteAllLines(trace,
        [
            """{"timestamp": 0, "input_length": 1000, "output_length": 500, "hash_ids": [0, 1]}""",
            """{"timestamp": 10, "input_length": 1000, "output_length": 2, "hash_ids": [0, 2]}""",
            """{"timestamp": 20, "input_length": 10, "output_length": 2, "hash_ids": [3]}""",
        ]);

        CliProcess.Result r = CliProcess.Run(["bench", "serve", "--url", server.Url, "--model", "fake", "--concurrency", "2", "--num-prompts", "2", "--workload", "trace:" + trace, "--input-len", "600", "--output-len", "4", "--trace-scale", "10", "--json", "--no-warmup"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("completed").GetInt32());
        Assert.Equal(6, doc.RootElement.GetProperty("output_tokens").GetInt32());
        string[] prompts = [.. server.Requests.OrderBy(q => q.Index).Select(q => q.Body.GetProperty("messages")[0].GetProperty("content").GetString()!)];
        Assert.All(prompts, p => Assert.Equal(600, p.Split(' ').Length));
        Assert.Equal(prompts[0].Split(' ').Take(512), prompts[1].Split(' ').Take(512));
        Assert.NotEqual(prompts[0], prompts[1]);
    }

    [Fact]
    public void BenchServe_NothingListening_AllErrorsAndExitCode1()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "serve", "--url", "http://127.0.0.1:1", "--model", "m", "--num-prompts", "2", "--json"]);

        Assert.Equal(1, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("errors").GetInt32());
        Assert.Contains("warm-up request failed", r.Stderr);
        Assert.StartsWith("HttpRequestException", doc.RootElement.GetProperty("error_messages")[0].GetString());
    }

    [Theory]
    [InlineData("--concurrency", "0", "error: --concurrency must be at least 1")]
    [InlineData("--workload", "bogus", "error: --workload: 'bogus' is not random")]
    [InlineData("--url", "localhost:8000", "error: --url: 'localhost:8000' is not an http")]
    [InlineData("--trace-scale", "0", "error: --trace-scale must be a positive number")]
    [InlineData("--plot", "out.svg", "error: --plot: 'out.svg' must end in .png")]
    [InlineData("--workload", "trace:/nonexistent/t.jsonl", "error: --workload trace: no file")]
    public void BenchServe_BadFlag_OneLineErrorNamingIt(string flag, string value, string expected)
    {
        CliProcess.Result r = CliProcess.Run(["bench", "serve", "--model", "m", flag, value]);

        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith(expected, Assert.Single(r.StderrLines));
    }
}
