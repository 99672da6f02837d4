using Dynamo.Llm.Routing;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;
using Dynamo.Tests.Infrastructure;

using Xunit.Abstractions;

namespace Dynamo.Tests.Load.Simulation;

/// <summary>
/// The simulator against wall time: an hour of traffic in seconds, and its figures against the real-time <c>bench routing</c>
/// on the same workload (which measures real latencies: alone, in the timing collection).
/// </summary>
[Collection(TimingCollection.Name)]
[Trait("Category", "Slow")]
public class SimulationTimingTests(ITestOutputHelper output)
{
    /// <summary>The fidelity tolerance (docs/simulation.md): TTFT mean within 30% + 10 ms of the real one, hit rate within 0.08.</summary>
    private const double TtftRelative = 0.30, TtftAbsoluteMs = 10, HitRateAbsolute = 0.08;

    [Fact]
    public async Task Run_OneHourOfTraffic_FinishesInSecondsOfWallTime()
    {
        // 720 requests, one every 5 s of virtual time: an hour, with every worker idle between them.
        string trace = TraceFile(720, intervalMs: 5000, groups: 12);
        LoadOptions load = Load(trace);
        var started = DateTime.UtcNow;
        SimulationBenchmark.Outcome o = await SimulationBenchmark.RunAsync(SimulationOptions.Default with { Workers = 8, Modes = [RouterModes.Kv] }, new TraceWorkload(trace), load, int.MaxValue, TextWriter.Null);
        TimeSpan wall = DateTime.UtcNow - started;

        SimulationModeResult r = o.Modes[0];
        Assert.Equal(720, r.Completed);
        Assert.True(r.VirtualTime > TimeSpan.FromMinutes(59), $"simulated {r.VirtualTime}");
        Assert.True(wall < TimeSpan.FromSeconds(30), $"an hour of traffic took {wall.TotalSeconds:F1} s of wall time");
    }

    [Fact]
    public async Task Simulate_EightWorkers_AgreesWithRealTimeBenchRouting()
    {
        // 96 requests in 6 prefix groups, interleaved (3 shared blocks of 64 tokens, one own), 10 a second, prompts as token
        // ids (exact lengths). Six groups on eight workers, not eight: with as many groups as workers round-robin sent each
        // group to one worker, and its hit rate hung on every request keeping its place (one CI run: real 57.0 % against
        // simulated 68.8 %); now each group cycles over four workers, and a request out of place costs one hit, not a group's.
        string trace = TraceFile(96, intervalMs: 100, groups: 6);
        LoadOptions load = Load(trace);
        var workload = new TraceWorkload(trace, tokenIds: true);
        string[] modes = [RouterModes.Kv, RouterModes.RoundRobin];
        SimulationBenchmark.Outcome simulated = await SimulationBenchmark.RunAsync(
            SimulationOptions.Default with { Workers = 8, Modes = modes, Mocker = MockerOptions.Default with { NumGpuBlocks = 2048 } }, workload, load, load.Concurrency, TextWriter.Null);

        // The real-time side in a process of its own: `dynamo bench routing` on the same trace (token ids, 64-token blocks),
        // the same eight mocker workers of 2048 blocks behind a real frontend. In the test host it measured, twice in CI,
        // a round-robin TTFT ten times the simulation's while the kv run a few seconds earlier agreed: real time measured
        // inside a process that had run 2,800 tests shared that process's collections and leftover threads.
        CliProcess.Result run = CliProcess.Run(["bench", "routing", "--workers", "8", "--num-gpu-blocks", "2048", "--modes", string.Join(',', modes),
            "-w", $"trace-tokens:{trace}", "--trace-block-tokens", "64", "-n", "96", "-c", load.Concurrency.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json"],
            TimeSpan.FromMinutes(5));
        Assert.True(run.ExitCode == 0, run.Stderr);
        using var real = System.Text.Json.JsonDocument.Parse(run.Stdout);
        System.Text.Json.JsonElement[] realModes = [.. real.RootElement.GetProperty("modes").EnumerateArray()];

        for (int i = 0; i < modes.Length; i++)
        {
            SimulationModeResult s = simulated.Modes[i];
            System.Text.Json.JsonElement r = realModes[i];
            Assert.Equal(modes[i], r.GetProperty("mode").GetString());
            double realTtftMs = r.GetProperty("ttft_mean_ms").GetDouble(), realHitRate = r.GetProperty("prefix_hit_rate").GetDouble();
            string figures = $"{modes[i]}: simulated TTFT {s.Ttft.Mean * 1000:F1} ms, hit rate {s.HitRate:P1}; real TTFT {realTtftMs:F1} ms, hit rate {realHitRate:P1}";
            output.WriteLine(figures);
            Assert.Equal(96, s.Completed);
            Assert.Equal(96, r.GetProperty("completed").GetInt32());
            Assert.True(Math.Abs((s.Ttft.Mean * 1000) - realTtftMs) <= (TtftRelative * realTtftMs) + TtftAbsoluteMs, figures);
            Assert.True(Math.Abs(s.HitRate - realHitRate) <= HitRateAbsolute, figures);
        }
    }

    private static LoadOptions Load(string trace) => LoadOptions.Default with
    {
        Url = "http://127.0.0.1:1",
        Model = "mocker",
        NumPrompts = int.MaxValue,
        Concurrency = 256,
        TraceBlockTokens = 64,
        InputLen = null,
        OutputLen = null,
    };

    /// <summary>A Mooncake-format trace: request i of group i % groups shares its group's three hash ids, then has its own; 4 x 512 tokens in, 64 x 8 out.</summary>
    private static string TraceFile(int requests, int intervalMs, int groups)
    {
        string path = Path.Combine(Path.GetTempPath(), $"dynamo-sim-{Guid.NewGuid():N}.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, requests).Select(i =>
        {
            int g = i % groups;
            return $"{{\"timestamp\": {i * intervalMs}, \"input_length\": 2048, \"output_length\": 64, \"hash_ids\": [{g * 10}, {g * 10 + 1}, {g * 10 + 2}, {1000 + i}]}}";
        }));
        return path;
    }
}
