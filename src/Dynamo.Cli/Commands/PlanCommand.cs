using System.CommandLine;
using System.Globalization;
using Dynamo.Llm.Routing;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo plan</c>: the smallest deployment (aggregated or disaggregated, prefill:decode ratio, worker count, router
/// mode) that meets TTFT and ITL p99 targets on a workload, found by simulating candidates (<see cref="CapacityPlanner"/>;
/// docs/simulation.md, "Capacity planning").
/// </summary>
internal static class PlanCommand
{
    /// <summary>Requests of a trace simulated for each candidate unless -n or --whole-trace says otherwise.</summary>
    public const int DefaultTracePrefix = 1000;

    public static Command Create()
    {
        var trace = new Option<string?>("--trace") { Description = "The workload: a Mooncake-format trace (the same as -w trace:FILE)" };
        var ttft = new Option<double>("--ttft-p99") { Description = "Target: TTFT p99 at most, ms", Required = true };
        var itl = new Option<double>("--itl-p99") { Description = "Target: inter-token latency p99 at most, ms", Required = true };
        var maxWorkers = new Option<int>("--max-workers") { Description = "Workers at most (prefill and decode together)", DefaultValueFactory = _ => PlanOptions.Default.MaxWorkers };
        var shapes = new Option<string>("--shapes") { Description = "Deployments to try: agg, disagg or both", DefaultValueFactory = _ => "agg,disagg" };
        var ratios = new Option<string>("--ratios") { Description = "Prefill:decode ratios of the disaggregated deployments", DefaultValueFactory = _ => "1:3,1:1,3:1" };
        var modes = new Option<string>("--router-modes", "--modes") { Description = "Router modes to try (kv, round-robin, random)", DefaultValueFactory = _ => $"{RouterModes.Kv},{RouterModes.RoundRobin}" };
        var profile = new Option<string>("--profile") { Description = $"Worker cost model: {WorkerProfiles.Names} (docs/simulation.md)", DefaultValueFactory = _ => WorkerProfiles.Default };
        var whole = new Option<bool>("--whole-trace") { Description = $"Simulate the whole trace for each candidate (default: its first {DefaultTracePrefix} requests, or -n)" };
        var delay = new Option<double>("--kv-event-delay-ms") { Description = "Virtual time a KV event takes from a worker to the router (0: at once)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("plan", "The smallest deployment that meets TTFT and ITL p99 targets on a workload: aggregated or disaggregated, prefill:decode ratio, worker count and router mode, each simulated")
        {
            trace, ttft, itl, maxWorkers, shapes, ratios, modes, profile, whole, delay, json,
        };
        SimulateCommand.MockerCostFlags cost = SimulateCommand.MockerCostFlags.AddTo(command);
        SimulateCommand.DisaggregationSimulationFlags disagg = SimulateCommand.DisaggregationSimulationFlags.AddTo(command);
        LoadFlags loadFlags = LoadFlags.AddTo(command, SharedPrefixWorkload.WorkloadName, concurrency: 256, numPrompts: 400, traceBlockTokens: TraceWorkload.TraceBlockSize, inputLen: 600, outputLen: 8, requestRate: 40);
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            string name = parse.GetValue(profile)!;
            (bool aggregated, bool disaggregated) = Shapes(parse.GetValue(shapes)!);
            string[] modeNames = parse.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var options = new PlanOptions
            {
                TtftP99Ms = parse.GetValue(ttft),
                ItlP99Ms = parse.GetValue(itl),
                MaxWorkers = parse.GetValue(maxWorkers),
                Aggregated = aggregated,
                Ratios = disaggregated ? PlanOptions.ParseRatios(parse.GetValue(ratios)!) : [],
                Modes = modeNames,
                Simulation = disagg.Read(parse, name, new SimulationOptions
                {
                    Modes = modeNames,
                    Profile = name,
                    Mocker = cost.Read(parse, WorkerProfiles.Get(name)),
                    KvRouter = kv.Read(parse),
                    KvEventDelay = TimeSpan.FromMilliseconds(parse.GetValue(delay)),
                    Seed = parse.GetValue(loadFlags.SeedOption),
                }),
            }.Validate();

            string? workloadName = null;
            if (parse.GetValue(trace) is { } file)
            {
                if (parse.GetResult(loadFlags.WorkloadOption) is { Implicit: false })
                {
                    throw new CliUsageException("--trace: give --trace or --workload, not both");
                }

                workloadName = File.Exists(file) ? TraceWorkload.WorkloadPrefix + file : throw new CliUsageException($"--trace: no such file: {file}");
            }

            IWorkload workload = loadFlags.Workload(parse, workloadName);
            LoadOptions load = loadFlags.Read(parse, "http://127.0.0.1:1", "simulated", workloadName);
            bool isTrace = workload is TraceWorkload;
            if (isTrace)
            {
                load = load with { NumPrompts = parse.GetValue(whole) ? int.MaxValue : loadFlags.NumPromptsGiven(parse) ? load.NumPrompts : DefaultTracePrefix };
            }
            else if (parse.GetValue(whole))
            {
                throw new CliUsageException("--whole-trace: only with a trace (--trace FILE)");
            }

            int concurrency = isTrace && !loadFlags.ConcurrencyGiven(parse) ? int.MaxValue : load.Concurrency;
            IReadOnlyList<LoadConversation> conversations = SimulationBenchmark.Build(workload, load);
            string described = isTrace && !parse.GetValue(whole)
                ? string.Create(CultureInfo.InvariantCulture, $"{workload.Name} (its first requests: -n {load.NumPrompts}; --whole-trace for all)")
                : workload.Name;
            CapacityPlan plan = await CapacityPlanner.RunAsync(options, described, conversations, concurrency, Console.Error);
            if (parse.GetValue(json))
            {
                using Stream stdout = Console.OpenStandardOutput();
                plan.WriteJson(stdout);
            }
            else
            {
                plan.WriteTable(Console.Out);
            }

            return plan.Answer is null ? 2 : 0;
        });
        return command;
    }

    /// <summary>Parses --shapes: agg, disagg or both.</summary>
    private static (bool Aggregated, bool Disaggregated) Shapes(string text)
    {
        bool agg = false, disagg = false;
        foreach (string shape in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            switch (shape)
            {
                case "agg":
                    agg = true;
                    break;
                case "disagg":
                    disagg = true;
                    break;
                default:
                    throw new CliUsageException($"--shapes: '{shape}' is not agg or disagg");
            }
        }

        return agg || disagg ? (agg, disagg) : throw new CliUsageException("--shapes: name agg, disagg or both");
    }
}
