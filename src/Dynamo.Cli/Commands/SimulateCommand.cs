using System.CommandLine;
using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo simulate</c>: the real router in front of N simulated workers (the mocker's scheduler and block pool with a
/// named cost model), all in virtual time, one router mode after the other on the same workload
/// (<see cref="SimulationBenchmark"/>; docs/simulation.md).
/// </summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var workers = new Option<int>("--workers") { Description = "Simulated workers (with --prefill-workers: the decode workers)", DefaultValueFactory = _ => SimulationOptions.Default.Workers };
        var prefillWorkers = new Option<int>("--prefill-workers") { Description = "Prefill workers beside the decode workers: a disaggregated deployment, the real disaggregation rule deciding each request (0: aggregated)" };
        var decodeWorkers = new Option<int?>("--decode-workers") { Description = "Decode workers, with --prefill-workers (the same as --workers)" };
        var modes = new Option<string>("--router-modes", "--modes") { Description = "Comma-separated router modes, run one after the other", DefaultValueFactory = _ => "kv,round-robin,random" };
        var profile = new Option<string>("--profile") { Description = $"Worker cost model: {WorkerProfiles.Names} (docs/simulation.md)", DefaultValueFactory = _ => WorkerProfiles.Default };
        var delay = new Option<double>("--kv-event-delay-ms") { Description = "Virtual time a KV event takes from a worker to the router (0: at once)" };
        var replicas = new Option<int>("--router-replicas") { Description = "KV router replicas sharing their charges; requests go to them round-robin", DefaultValueFactory = _ => 1 };
        var replicaDelay = new Option<double>("--replica-sync-delay-ms") { Description = "Virtual time a replica's charge takes to reach the other replicas (0: at once)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the tables" };
        var command = new Command("simulate", "The real router and schedulers of N simulated workers in virtual time: TTFT, ITL, hit rate, load spread and the router's decision time for each router mode")
        {
            workers, prefillWorkers, decodeWorkers, modes, profile, delay, replicas, replicaDelay, json,
        };
        MockerCostFlags cost = MockerCostFlags.AddTo(command);
        DisaggregationSimulationFlags disagg = DisaggregationSimulationFlags.AddTo(command);
        LoadFlags loadFlags = LoadFlags.AddTo(command, SharedPrefixWorkload.WorkloadName, concurrency: 256, numPrompts: 400, traceBlockTokens: TraceWorkload.TraceBlockSize, inputLen: 600, outputLen: 8, requestRate: 40);
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            string name = parse.GetValue(profile)!;
            int prefill = parse.GetValue(prefillWorkers);
            int? decode = parse.GetValue(decodeWorkers);
            if (decode is not null && prefill == 0)
            {
                throw new CliUsageException("--decode-workers: only with --prefill-workers (without prefill workers every worker is aggregated: use --workers)");
            }

            if (decode is not null && parse.GetResult(workers) is { Implicit: false })
            {
                throw new CliUsageException("--decode-workers: give --workers or --decode-workers, not both");
            }

            var options = disagg.Read(parse, name, new SimulationOptions
            {
                Workers = decode ?? parse.GetValue(workers),
                PrefillWorkers = prefill,
                Modes = parse.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Profile = name,
                Mocker = cost.Read(parse, WorkerProfiles.Get(name)),
                KvRouter = kv.Read(parse),
                KvEventDelay = TimeSpan.FromMilliseconds(parse.GetValue(delay)),
                RouterReplicas = parse.GetValue(replicas),
                ReplicaSyncDelay = TimeSpan.FromMilliseconds(parse.GetValue(replicaDelay)),
                Seed = parse.GetValue(loadFlags.SeedOption),
            });
            return await RunAsync(parse, options, loadFlags, parse.GetValue(json));
        });
        return command;
    }

    /// <summary>
    /// Runs the simulation with the workload of <paramref name="loadFlags"/> (a trace whole unless --num-prompts is given, and
    /// unbounded concurrency unless --concurrency is: every request at its arrival) and prints the tables or the JSON.
    /// </summary>
    public static async Task<int> RunAsync(ParseResult parse, SimulationOptions options, LoadFlags loadFlags, bool json)
    {
        options.Validate();
        IWorkload workload = loadFlags.Workload(parse);
        bool trace = workload is TraceWorkload;
        LoadOptions load = loadFlags.Read(parse, "http://127.0.0.1:1", "simulated");
        if (trace && !loadFlags.NumPromptsGiven(parse))
        {
            load = load with { NumPrompts = int.MaxValue };
        }

        int concurrency = trace && !loadFlags.ConcurrencyGiven(parse) ? int.MaxValue : load.Concurrency;
        SimulationBenchmark.Outcome outcome;
        try
        {
            outcome = await SimulationBenchmark.RunAsync(options, workload, load, concurrency, Console.Error);
        }
        catch (SimulationStalledException e)
        {
            await Console.Error.WriteLineAsync($"error: the simulation stalled: {e.Message}");
            return 1;
        }

        if (json)
        {
            using Stream stdout = Console.OpenStandardOutput();
            outcome.WriteJson(stdout);
        }
        else
        {
            outcome.WriteTable(Console.Out);
        }

        return outcome.Modes.All(r => r.Completed > 0) ? 0 : 1;
    }

    /// <summary>The disaggregation rule's settings and the KV link of a disaggregated simulation (each defaults to the real default or the profile's).</summary>
    internal sealed class DisaggregationSimulationFlags
    {
        private readonly Option<bool?> _conditional = new("--conditional-disagg") { Description = "Prefill remotely only by the rule of --max-local-prefill-length and --max-prefill-queue-size (true/false; default true)" };
        private readonly Option<int?> _maxLocal = new("--max-local-prefill-length") { Description = $"Prompts whose uncached part is at most this many tokens prefill on their decode worker (default {DisaggregationSettings.Default.MaxLocalPrefillLength})" };
        private readonly Option<int?> _maxQueue = new("--max-prefill-queue-size") { Description = $"Prefill remotely only while fewer requests wait at the prefill workers (default {DisaggregationSettings.Default.MaxPrefillQueueSize})" };
        private readonly Option<double?> _gbps = new("--kv-transfer-gbps") { Description = "Bandwidth a remote prefill's KV crosses to its decode worker, Gbit/s (default: the profile's; gpu-8b 400, one InfiniBand NDR port per GPU; docs/simulation.md)" };

        public static DisaggregationSimulationFlags AddTo(Command command)
        {
            var flags = new DisaggregationSimulationFlags();
            foreach (Option o in new Option[] { flags._conditional, flags._maxLocal, flags._maxQueue, flags._gbps })
            {
                command.Options.Add(o);
            }

            return flags;
        }

        /// <summary><paramref name="options"/> with the settings given and the link of <paramref name="profile"/> (its bandwidth overridden when given).</summary>
        public SimulationOptions Read(ParseResult parse, string profile, SimulationOptions options)
        {
            SimulatedKvLink link = WorkerProfiles.Link(profile);
            return options with
            {
                Disaggregation = DisaggregationSettings.FromGiven(parse.GetValue(_conditional), parse.GetValue(_maxLocal), parse.GetValue(_maxQueue))
                    ?? DisaggregationSettings.Default,
                KvLink = link with { Gbps = parse.GetValue(_gbps) ?? link.Gbps },
            };
        }
    }

    /// <summary>The mocker's cost-model and pool flags: each overrides the profile's value when given.</summary>
    internal sealed class MockerCostFlags
    {
        private readonly Option<double?> _stepMs = new("--step-ms") { Description = "Fixed cost of every step, ms (default: the profile's)" };
        private readonly Option<double?> _prefill = new("--prefill-ms-per-token") { Description = "Cost of each prefill token, ms (default: the profile's)" };
        private readonly Option<double?> _attention = new("--attention-ms-per-token-pair") { Description = "Cost of each causal (query, key) pair of prefill chunks, ms (default: the profile's)" };
        private readonly Option<double?> _decode = new("--decode-ms-per-seq") { Description = "Cost of each decoding sequence, ms (default: the profile's)" };
        private readonly Option<int?> _blocks = new("--num-gpu-blocks") { Description = "Each worker's KV pool, in blocks (default: the profile's)" };
        private readonly Option<int?> _blockSize = new("--block-size") { Description = "Tokens per KV block (default: the profile's)" };
        private readonly Option<int?> _maxSeqs = new("--max-num-seqs") { Description = "Running batch size at most (default: the profile's)" };
        private readonly Option<int?> _maxTokens = new("--max-num-batched-tokens") { Description = "Tokens per step at most (default: the profile's)" };
        private readonly Option<int?> _context = new("--context-length") { Description = "Prompt + output tokens at most (default: the profile's)" };
        private readonly Option<double> _eventLoss = new("--kv-event-loss") { Description = "Fault injection: the share (0..1) of each worker's KV events lost without a gap in their ids, which only the router's accuracy check (--router-resync-accuracy) can notice" };

        public static MockerCostFlags AddTo(Command command)
        {
            var flags = new MockerCostFlags();
            command.Options.Add(flags._stepMs);
            command.Options.Add(flags._prefill);
            command.Options.Add(flags._attention);
            command.Options.Add(flags._decode);
            command.Options.Add(flags._blocks);
            command.Options.Add(flags._blockSize);
            command.Options.Add(flags._maxSeqs);
            command.Options.Add(flags._maxTokens);
            command.Options.Add(flags._context);
            command.Options.Add(flags._eventLoss);
            return flags;
        }

        /// <summary>The profile's options with the given flags applied (validated later, naming the flag).</summary>
        public MockerOptions Read(ParseResult parse, MockerOptions profile) => profile with
        {
            StepMs = parse.GetValue(_stepMs) ?? profile.StepMs,
            PrefillMsPerToken = parse.GetValue(_prefill) ?? profile.PrefillMsPerToken,
            AttentionMsPerTokenPair = parse.GetValue(_attention) ?? profile.AttentionMsPerTokenPair,
            DecodeMsPerSequence = parse.GetValue(_decode) ?? profile.DecodeMsPerSequence,
            NumGpuBlocks = parse.GetValue(_blocks) ?? profile.NumGpuBlocks,
            BlockSize = parse.GetValue(_blockSize) ?? profile.BlockSize,
            MaxNumSeqs = parse.GetValue(_maxSeqs) ?? profile.MaxNumSeqs,
            MaxNumBatchedTokens = parse.GetValue(_maxTokens) ?? profile.MaxNumBatchedTokens,
            ContextLength = parse.GetValue(_context) ?? profile.ContextLength,
            KvEventLoss = parse.GetValue(_eventLoss),
        };
    }
}
