using Dynamo.Llm.Routing;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;

namespace Dynamo.Tests.Load.Simulation;

public class CapacityPlannerTests
{
    private static readonly LoadOptions Load = LoadOptions.Default with { Url = "http://127.0.0.1:1", Model = "sim", NumPrompts = 80, InputLen = 1500, OutputLen = 16, Concurrency = 256 };

    private static readonly IReadOnlyList<LoadConversation> Conversations = SimulationBenchmark.Build(new PoissonArrivals(new RandomTokensWorkload(), 40), Load);

    private static PlanOptions Targets(double ttftMs, double itlMs) => PlanOptions.Default with
    {
        TtftP99Ms = ttftMs,
        ItlP99Ms = itlMs,
        MaxWorkers = 8,
        Ratios = [(1, 1)],
        Modes = [RouterModes.Kv, RouterModes.RoundRobin],
    };

    private static Task<CapacityPlan> PlanAsync(PlanOptions options) => CapacityPlanner.RunAsync(options, "random-tokens", Conversations, 256, TextWriter.Null);

    [Theory]
    [InlineData(new[] { 5, 6, 7, 8 }, 5)] // monotonic: the binary search's answer
    [InlineData(new[] { 3, 5, 6, 7, 8 }, 3)] // 4 misses between 3 and 5 (bimodal latency): found below the search's 5
    [InlineData(new[] { 1, 5, 6, 7, 8 }, 5)] // two misses in a row (4, 3) end the look below
    [InlineData(new int[0], null)]
    public async Task SmallestMeetingAsync_LatencyNotMonotonic_LooksBelowTheBinarySearch(int[] meeting, int? expected)
    {
        var asked = new List<int>();
        int? smallest = await CapacityPlanner.SmallestMeetingAsync(1, 8, n =>
        {
            asked.Add(n);
            return Task.FromResult(meeting.Contains(n));
        });

        Assert.Equal(expected, smallest);
        Assert.True(asked.Count <= 8, $"asked {string.Join(", ", asked)}");
    }

    [Fact]
    public async Task Run_LooserTarget_SmallerDeploymentThatMeetsItWhenSimulatedAgain()
    {
        CapacityPlan tight = await PlanAsync(Targets(300, 50));
        CapacityPlan loose = await PlanAsync(Targets(3000, 50));

        PlanCandidate t = Assert.IsType<PlanCandidate>(tight.Answer);
        PlanCandidate l = Assert.IsType<PlanCandidate>(loose.Answer);
        Assert.True(l.Workers < t.Workers, $"loose {l.Workers} workers, tight {t.Workers}");
        foreach ((CapacityPlan plan, PlanCandidate c) in new[] { (tight, t), (loose, l) })
        {
            SimulationOptions again = SimulationOptions.Default with { Workers = c.DecodeWorkers, PrefillWorkers = c.PrefillWorkers, Modes = [c.Mode] };
            SimulationModeResult r = await Simulator.RunAsync(again, c.Mode, Conversations, 256);
            Assert.Equal(r.Requests, r.Completed);
            Assert.InRange(r.Ttft.P99 * 1000, 0, plan.Options.TtftP99Ms);
            Assert.InRange(r.Itl.P99 * 1000, 0, plan.Options.ItlP99Ms);
            Assert.Equal(c.Result!.Ttft, r.Ttft);
        }
    }

    [Fact]
    public async Task Run_AnswerOfOneWorkerFewer_MissesTheTarget()
    {
        CapacityPlan plan = await PlanAsync(Targets(300, 50));

        PlanCandidate answer = plan.Answer!;
        Assert.Contains(plan.Tried, c => c.Shape == answer.Shape && c.Mode == answer.Mode && c.Workers == answer.Workers - 1 && !c.Meets);
        Assert.DoesNotContain(plan.Tried, c => c.Meets && c.Workers < answer.Workers);
        Assert.Equal(plan.Tried.Count, plan.Tried.Select(c => (c.Mode, c.PrefillWorkers, c.DecodeWorkers)).Distinct().Count());
    }

    [Fact]
    public async Task Run_UnreachableTarget_NoAnswerButTheClosest()
    {
        CapacityPlan plan = await PlanAsync(Targets(1, 50) with { MaxWorkers = 4 });

        Assert.Null(plan.Answer);
        PlanCandidate best = Assert.IsType<PlanCandidate>(plan.Best);
        Assert.Contains("TTFT p99", best.Miss);
        var text = new StringWriter();
        plan.WriteTable(text);
        Assert.Contains("no deployment of at most 4 workers meets the targets", text.ToString());
        Assert.Contains("the closest found", text.ToString());
    }

    [Theory]
    [InlineData(1, 3, 8, 2, 6)]
    [InlineData(1, 3, 2, 1, 1)]
    [InlineData(3, 1, 5, 4, 1)]
    [InlineData(1, 1, 7, 4, 3)]
    public void Split_Ratio_AtLeastOneOfEach(int p, int d, int workers, int prefill, int decode)
    {
        Assert.Equal((prefill, decode), CapacityPlanner.Split((p, d), workers));
    }

    [Theory]
    [InlineData(0, 50, 8, "--ttft-p99")]
    [InlineData(100, -1, 8, "--itl-p99")]
    [InlineData(100, 50, 0, "--max-workers")]
    public void Validate_BadSetting_NamesTheFlag(double ttft, double itl, int maxWorkers, string flag)
    {
        PlanOptions options = PlanOptions.Default with { TtftP99Ms = ttft, ItlP99Ms = itl, MaxWorkers = maxWorkers };

        ArgumentException e = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.Contains(flag, e.Message);
    }

    [Theory]
    [InlineData("1:0")]
    [InlineData("2")]
    [InlineData("a:b")]
    public void ParseRatios_Bad_NamesTheFlag(string text)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => PlanOptions.ParseRatios(text));
        Assert.Contains("--ratios", e.Message);
    }
}
