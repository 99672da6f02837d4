using Dynamo.Llm.Routing;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;

namespace Dynamo.Tests.Load.Simulation;

public class SimulatorTests
{
    private static readonly LoadOptions SharedPrefix = LoadOptions.Default with { Url = "http://127.0.0.1:1", Model = "sim", NumPrompts = 300, InputLen = 600, OutputLen = 8, PrefixGroups = 32, Concurrency = 256 };

    private static Task<SimulationBenchmark.Outcome> RunAsync(SimulationOptions options, IWorkload workload, LoadOptions load, int concurrency = 256) =>
        SimulationBenchmark.RunAsync(options, workload, load, concurrency, TextWriter.Null);

    private static SimulationOptions Options(int workers, params string[] modes) => SimulationOptions.Default with { Workers = workers, Modes = modes };

    [Fact]
    public async Task Run_SameSeedTwice_IdenticalFiguresButWallTimes()
    {
        var workload = new PoissonArrivals(new SharedPrefixWorkload(), 40);
        SimulationBenchmark.Outcome a = await RunAsync(Options(8, RouterModes.Kv, RouterModes.Random) with { KvEventDelay = TimeSpan.FromMilliseconds(2) }, workload, SharedPrefix);
        SimulationBenchmark.Outcome b = await RunAsync(Options(8, RouterModes.Kv, RouterModes.Random) with { KvEventDelay = TimeSpan.FromMilliseconds(2) }, workload, SharedPrefix);

        Assert.Equal(2, a.Modes.Count);
        for (int i = 0; i < a.Modes.Count; i++)
        {
            Assert.Equal(Virtual(a.Modes[i]), Virtual(b.Modes[i]));
        }
    }

    [Fact]
    public async Task Run_DifferentSeed_RandomRouterSpreadsDifferently()
    {
        var workload = new PoissonArrivals(new SharedPrefixWorkload(), 40);
        SimulationBenchmark.Outcome a = await RunAsync(Options(8, RouterModes.Random), workload, SharedPrefix);
        SimulationBenchmark.Outcome b = await RunAsync(Options(8, RouterModes.Random) with { Seed = 2 }, workload, SharedPrefix);

        Assert.NotEqual(a.Modes[0].RequestsPerWorker, b.Modes[0].RequestsPerWorker);
    }

    [Fact]
    public async Task Run_PrefixHeavyWorkload_KvBeatsRoundRobinOnHitRateAndTtft()
    {
        var workload = new PoissonArrivals(new SharedPrefixWorkload(), 40);
        SimulationBenchmark.Outcome o = await RunAsync(Options(8, RouterModes.Kv, RouterModes.RoundRobin), workload, SharedPrefix);

        SimulationModeResult kv = o.Modes[0], roundRobin = o.Modes[1];
        Assert.True(kv.HitRate > roundRobin.HitRate + 0.15, $"kv {kv.HitRate:P1}, round-robin {roundRobin.HitRate:P1}");
        Assert.True(kv.Ttft.Mean < roundRobin.Ttft.Mean, $"kv {kv.Ttft.Mean * 1000:F1} ms, round-robin {roundRobin.Ttft.Mean * 1000:F1} ms");
        Assert.True(kv.DecisionMicros.Count == 300 && roundRobin.DecisionMicros.Count == 300);
        Assert.True(kv.KvEvents > 0);
    }

    [Theory]
    [InlineData(RouterModes.Kv)]
    [InlineData(RouterModes.RoundRobin)]
    [InlineData(RouterModes.Random)]
    public async Task Run_MultiTurnWorkload_EveryRequestCompletes(string mode)
    {
        LoadOptions load = SharedPrefix with { NumPrompts = 120, InputLen = 64, OutputLen = 16, Concurrency = 8 };
        SimulationBenchmark.Outcome o = await RunAsync(Options(4, mode), new MultiTurnWorkload(), load, concurrency: 8);

        SimulationModeResult r = o.Modes[0];
        Assert.Equal(120, o.Requests);
        Assert.Equal((120, 120, 0), (r.Requests, r.Completed, r.Rejected));
        Assert.Equal(120.0 * 4 / 4, r.RequestsPerWorker.Mean * 4, 3);
        Assert.Equal(120 * 15, r.Itl.Count);
        Assert.True(r.HitRate > 0.2, $"later turns carry the earlier ones: hit rate {r.HitRate:P1}");
    }

    [Fact]
    public async Task Run_SaturatedKvRouter_QueuesAndStillCompletesEveryRequest()
    {
        // One worker with a 64-token batch budget: the router saturates and queues; every request still ends.
        LoadOptions load = SharedPrefix with { NumPrompts = 60, InputLen = 200, OutputLen = 4 };
        SimulationOptions options = Options(2, RouterModes.Kv) with { Mocker = WorkerProfiles.Get(WorkerProfiles.Cpu110M) with { MaxNumBatchedTokens = 64 } };
        SimulationBenchmark.Outcome o = await RunAsync(options, new SharedPrefixWorkload(), load);

        SimulationModeResult r = o.Modes[0];
        Assert.Equal(60, r.Completed + r.Rejected);
        Assert.Equal(60, r.Completed);
    }

    [Fact]
    public async Task Run_PromptBeyondTheContext_CountedAsRejected()
    {
        LoadOptions load = SharedPrefix with { NumPrompts = 10, InputLen = 5000, OutputLen = 4 };
        SimulationOptions options = Options(2, RouterModes.RoundRobin) with { Mocker = WorkerProfiles.Get(WorkerProfiles.Cpu110M) };
        SimulationBenchmark.Outcome o = await RunAsync(options, new RandomWorkload(), load);

        Assert.Equal((10, 0), (o.Modes[0].Rejected, o.Modes[0].Completed));
    }

    [Fact]
    public async Task Run_FewRequestsManyWorkers_ReportsStarvedWorkers()
    {
        LoadOptions load = SharedPrefix with { NumPrompts = 5, InputLen = 32, OutputLen = 2 };
        SimulationBenchmark.Outcome o = await RunAsync(Options(16, RouterModes.RoundRobin), new RandomWorkload(), load);

        Assert.Equal(11, o.Modes[0].StarvedWorkers);
        Assert.Equal((0, 1), (o.Modes[0].RequestsPerWorker.Min, o.Modes[0].RequestsPerWorker.Max));
    }

    [Fact]
    public async Task Run_WorkersLosingKvEvents_AccuracyCheckResyncsAndPredictsBetter_NoResyncWithoutLoss()
    {
        // Requests of each prefix group 3 s apart on average: past the recent-prefix window, only the index knows the holder.
        var workload = new PoissonArrivals(new SharedPrefixWorkload(), 10);
        SimulationOptions lossy = Options(4, RouterModes.Kv) with { Mocker = SimulationOptions.Default.Mocker with { KvEventLoss = 0.5 } };
        SimulationModeResult off = (await RunAsync(lossy with { KvRouter = KvRouterOptions.Default with { ResyncAccuracy = 0 } }, workload, SharedPrefix)).Modes[0];
        SimulationModeResult on = (await RunAsync(lossy, workload, SharedPrefix)).Modes[0];
        SimulationModeResult clean = (await RunAsync(Options(4, RouterModes.Kv), workload, SharedPrefix)).Modes[0];

        Assert.True(off.KvEventsLost > 0 && on.KvEventsLost > 0);
        Assert.Equal(0, off.AccuracyResyncs);
        Assert.True(on.AccuracyResyncs > 0, "no resync");
        Assert.True(on.CachedTokenPredictionError < off.CachedTokenPredictionError, $"prediction error with the check {on.CachedTokenPredictionError:P1}, without {off.CachedTokenPredictionError:P1}");
        Assert.Equal(0, clean.KvEventsLost);
        Assert.Equal(0, clean.AccuracyResyncs);
        Assert.True(clean.CachedTokenPredictionError < 0.05, $"prediction error without loss {clean.CachedTokenPredictionError:P1}");
    }

    /// <summary>
    /// Paced conversations as the Mooncake conversation trace has them: every request its own, arriving
    /// <paramref name="gap"/> after the last turn of its conversation, its prompt that turn's prompt extended; every
    /// prompt starts with the same 32 tokens (a block everything shares).
    /// </summary>
    private static List<LoadConversation> PacedConversations(int conversations, int turns, TimeSpan gap)
    {
        var requests = new List<LoadConversation>();
        for (int c = 0; c < conversations; c++)
        {
            var prompt = new List<int>(Enumerable.Range(1, 32));
            for (int t = 0; t < turns; t++)
            {
                prompt.AddRange(Enumerable.Range(1000 + (c * 500) + (t * 100), 96)); // within the mocker's vocabulary
                requests.Add(new LoadConversation(null, [new LoadTurn("", 8) { PromptTokenIds = [.. prompt] }], TimeSpan.FromSeconds(c * 0.25) + (t * gap)));
            }
        }

        return [.. requests.OrderBy(r => r.Arrival)];
    }

    [Fact]
    public async Task Run_PacedFollowUpsWithoutKvEvents_GoToTheirPrefixHolderFarMoreThanRoundRobin()
    {
        // 15 conversations on 4 workers: round-robin does not bring a conversation back to the same worker by chance.
        List<LoadConversation> paced = PacedConversations(15, 4, TimeSpan.FromSeconds(5));
        SimulationOptions options = Options(4, RouterModes.Kv) with { KvRouter = KvRouterOptions.Default with { UseKvEvents = false } };
        SimulationModeResult noEvents = await Simulator.RunAsync(options, RouterModes.Kv, paced, int.MaxValue);
        SimulationModeResult roundRobin = await Simulator.RunAsync(options, RouterModes.RoundRobin, paced, int.MaxValue);

        Assert.Equal("kv --no-kv-events", noEvents.Mode);
        Assert.True(noEvents.KvEvents > 0, "the workers publish KV events; the router ignores them");
        Assert.Equal((15 * 3, 2), (noEvents.FollowUps.Count, noEvents.FollowUps.SharedBlocks));
        Assert.Equal(15 * 3, roundRobin.FollowUps.Count);
        Assert.InRange(noEvents.FollowUps.Gap.P50, 4, 5);
        Assert.True(noEvents.FollowUps.OnPrefixHolderShare > 0.9, $"without KV events {noEvents.FollowUps.OnPrefixHolderShare:P1}");
        Assert.True(noEvents.FollowUps.OnPrefixHolderShare > roundRobin.FollowUps.OnPrefixHolderShare + 0.4,
            $"without KV events {noEvents.FollowUps.OnPrefixHolderShare:P1}, round-robin {roundRobin.FollowUps.OnPrefixHolderShare:P1}");
        Assert.True(noEvents.HitRate > roundRobin.HitRate, $"without KV events {noEvents.HitRate:P1}, round-robin {roundRobin.HitRate:P1}");
    }

    [Fact]
    public async Task Run_StepOfExactlyTheEmptyStepRetry_IsAStepNotAStall()
    {
        // 8 ms + 40 prefill tokens x 0.05 ms = 10 ms, the mocker's retry time for a step that fits nothing: the stall check
        // took it for one and stopped the synthetic Mooncake trace at 6.4 s of virtual time.
        MockerOptions mocker = SimulationOptions.Default.Mocker with { StepMs = 8, PrefillMsPerToken = 0.05, AttentionMsPerTokenPair = 0 };
        Assert.Equal(MockerEngine.EmptyStepRetry, mocker.StepTime(40, 0, 0));
        LoadConversation[] one = [new LoadConversation(null, [new LoadTurn("", 4) { PromptTokenIds = [.. Enumerable.Range(1, 40)] }], TimeSpan.Zero)];

        SimulationModeResult r = await Simulator.RunAsync(Options(1, RouterModes.Kv) with { Mocker = mocker }, RouterModes.Kv, one, int.MaxValue);

        Assert.Equal(1, r.Completed);
    }

    [Theory]
    [InlineData(0, "kv", "--workers")]
    [InlineData(4, "kv,fastest", "--router-modes")]
    [InlineData(4, "", "--router-modes")]
    public void Validate_BadSetting_NamesTheFlag(int workers, string modes, string flag)
    {
        SimulationOptions options = SimulationOptions.Default with { Workers = workers, Modes = modes.Split(',', StringSplitOptions.RemoveEmptyEntries) };

        ArgumentException e = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.StartsWith(flag, e.Message);
    }

    [Fact]
    public void Profiles_UnknownName_NamesTheFlag()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => WorkerProfiles.Get("tpu"));
        Assert.StartsWith("--profile", e.Message);
        Assert.All([WorkerProfiles.Gpu8B, WorkerProfiles.Gpu70BTp8, WorkerProfiles.Cpu110M], name => WorkerProfiles.Get(name).Validate());
    }

    /// <summary>Everything but the real (wall-clock) times.</summary>
    private static object Virtual(SimulationModeResult r) => r with { WallTime = default, DecisionMicros = default, DecisionMicrosUninterrupted = default, DecisionsInterrupted = 0 };
}
