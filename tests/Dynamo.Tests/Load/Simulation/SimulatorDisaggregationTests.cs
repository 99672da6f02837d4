using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Routing;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;

namespace Dynamo.Tests.Load.Simulation;

public class SimulatorDisaggregationTests
{
    private static readonly LoadOptions Load = LoadOptions.Default with { Url = "http://127.0.0.1:1", Model = "sim", NumPrompts = 60, InputLen = 1500, OutputLen = 4, Concurrency = 256 };

    private static readonly IWorkload Workload = new PoissonArrivals(new RandomTokensWorkload(), 20);

    private static SimulationOptions Disaggregated(int decode, int prefill, params string[] modes) =>
        SimulationOptions.Default with { Workers = decode, PrefillWorkers = prefill, Modes = modes };

    private static Task<SimulationBenchmark.Outcome> RunAsync(SimulationOptions options, LoadOptions load, int concurrency = 256) =>
        SimulationBenchmark.RunAsync(options, Workload, load, concurrency, TextWriter.Null);

    [Theory]
    [InlineData(RouterModes.Kv)]
    [InlineData(RouterModes.RoundRobin)]
    [InlineData(RouterModes.Random)]
    public async Task Run_LongPrompts_PrefillRemotelyAndEveryRequestCompletes(string mode)
    {
        SimulationBenchmark.Outcome o = await RunAsync(Disaggregated(2, 2, mode), Load);

        SimulationModeResult r = o.Modes[0];
        SimulationDisaggregation d = Assert.IsType<SimulationDisaggregation>(r.Disaggregation);
        Assert.Equal((60, 60, 0), (r.Requests, r.Completed, r.Rejected));
        Assert.Equal(60, d.RemoteDecisions + d.LocalDecisions);
        Assert.True(d.RemotePrefills > 0, $"remote prefills {d.RemotePrefills}");
        Assert.Equal(d.RemoteDecisions, d.RemotePrefills + d.Fallbacks.Sum(f => f.Count));
        Assert.Equal(d.RemotePrefills * 1499 * WorkerProfiles.Link(WorkerProfiles.Gpu8B).BytesPerToken, d.TransferBytes);
        Assert.Equal(d.RemotePrefills, (long)(d.PrefillRequestsPerWorker.Mean * 2));
    }

    [Fact]
    public async Task Run_PromptsWithinMaxLocalPrefill_AllPrefillLocally()
    {
        SimulationBenchmark.Outcome o = await RunAsync(Disaggregated(2, 2, RouterModes.Kv), Load with { InputLen = 800 });

        SimulationDisaggregation d = o.Modes[0].Disaggregation!;
        Assert.Equal(60, o.Modes[0].Completed);
        Assert.Equal([(false, PrefillReasons.ShortPrompt, 60L)], d.Decisions);
        Assert.Equal(0, d.RemotePrefills);
    }

    [Fact]
    public async Task Run_SameSeedTwice_IdenticalFiguresAndSplit()
    {
        SimulationOptions options = Disaggregated(2, 1, RouterModes.Kv, RouterModes.RoundRobin);
        SimulationBenchmark.Outcome a = await RunAsync(options, Load);
        SimulationBenchmark.Outcome b = await RunAsync(options, Load);

        for (int i = 0; i < a.Modes.Count; i++)
        {
            SimulationModeResult x = a.Modes[i], y = b.Modes[i];
            Assert.Equal((x.Ttft, x.Itl, x.EndToEnd, x.HitRate, x.VirtualTime, x.Events), (y.Ttft, y.Itl, y.EndToEnd, y.HitRate, y.VirtualTime, y.Events));
            Assert.Equal(x.Disaggregation!.Decisions, y.Disaggregation!.Decisions);
            Assert.Equal((x.Disaggregation.RemotePrefills, x.Disaggregation.TransferMs), (y.Disaggregation.RemotePrefills, y.Disaggregation.TransferMs));
        }
    }

    [Fact]
    public async Task Run_SlowerKvLink_TtftGrowsByTheTransferTime()
    {
        // One request at a time, every prefill remote: the TTFTs differ by the links' transfer times of 1,499 tokens exactly.
        SimulationOptions fast = Disaggregated(1, 1, RouterModes.RoundRobin) with { Disaggregation = DisaggregationSettings.Default with { ConditionalDisagg = false } };
        SimulationOptions slow = fast with { KvLink = fast.KvLink with { Gbps = 10 } };
        LoadOptions load = Load with { NumPrompts = 10, Concurrency = 1 };
        SimulationModeResult f = (await SimulationBenchmark.RunAsync(fast, new RandomTokensWorkload(), load, 1, TextWriter.Null)).Modes[0];
        SimulationModeResult s = (await SimulationBenchmark.RunAsync(slow, new RandomTokensWorkload(), load, 1, TextWriter.Null)).Modes[0];

        SimulatedKvLink link = fast.KvLink;
        double expected = (slow.KvLink.TransferTime(1499) - link.TransferTime(1499)).TotalSeconds;
        Assert.Equal(10, f.Disaggregation!.RemotePrefills);
        Assert.Equal(10, s.Disaggregation!.RemotePrefills);
        Assert.Equal(link.TransferTime(1499).TotalMilliseconds, f.Disaggregation.TransferMs.P50, 6);
        Assert.Equal(expected, s.Ttft.Mean - f.Ttft.Mean, 6);
        Assert.True(expected > 0.1, $"10 Gbit/s moves 1,499 tokens of 128 KiB in {expected * 1000:F0} ms more than 400");
    }

    [Fact]
    public async Task Run_NoPrefillWorkers_NoSplitReported()
    {
        SimulationBenchmark.Outcome o = await RunAsync(Disaggregated(2, 0, RouterModes.Kv), Load with { NumPrompts = 10 });

        Assert.Null(o.Modes[0].Disaggregation);
        Assert.Equal(0, o.Modes[0].PrefillWorkers);
    }

    [Theory]
    [InlineData(-1, 400.0, "--prefill-workers")]
    [InlineData(1, 0.0, "--kv-transfer-gbps")]
    public void Validate_BadDisaggregationSetting_NamesTheFlag(int prefill, double gbps, string flag)
    {
        SimulationOptions options = SimulationOptions.Default with { PrefillWorkers = prefill, KvLink = SimulationOptions.Default.KvLink with { Gbps = gbps } };

        ArgumentException e = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.Contains(flag, e.Message);
    }
}
