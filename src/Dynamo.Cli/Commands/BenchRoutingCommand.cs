using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench routing</c>: routing quality (see <see cref="RoutingBenchmark"/>) on this CLI's mocker
/// workers, one fresh in-process deployment per router mode, the same workload for each.
/// </summary>
internal static class BenchRoutingCommand
{
    public static Command Create()
    {
        var workers = new Option<int>("--workers") { Description = "Mocker workers", DefaultValueFactory = _ => 8 };
        var modes = new Option<string>("--modes") { Description = "Comma-separated router modes", DefaultValueFactory = _ => "kv,round-robin,random" };
        var blocks = new Option<int>("--num-gpu-blocks") { Description = "Each mocker's KV pool, in blocks of 16 tokens", DefaultValueFactory = _ => 2048 };
        var speedup = new Option<double>("--speedup-ratio") { Description = "Mocker time runs this many times faster", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var virtualTime = new Option<bool>("--virtual-time") { Description = "Simulate instead (dynamo simulate): the same workers, router and workload in virtual time, no HTTP" };
        var command = new Command("routing", "Routing quality on mocker workers: TTFT, throughput, rejections and prefix hits for each router mode")
        {
            workers, modes, blocks, speedup, json, virtualTime,
        };
        // The defaults reproduce the headline table of docs/benchmarks.md ("Routing quality").
        LoadFlags loadFlags = LoadFlags.AddTo(command, SharedPrefixWorkload.WorkloadName, concurrency: 256, numPrompts: 400, traceBlockTokens: 16, inputLen: 600, outputLen: 8, requestRate: 40);
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            int w = parse.GetValue(workers);
            if (w < 1)
            {
                throw new CliUsageException($"--workers: {w} must be at least 1");
            }

            string[] list = parse.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parse.GetValue(virtualTime))
            {
                // The mocker's defaults (what these workers run) with this bench's pool: the gpu-8b profile.
                var simulation = new SimulationOptions
                {
                    Workers = w,
                    Modes = list,
                    Mocker = WorkerProfiles.Get(WorkerProfiles.Gpu8B) with { NumGpuBlocks = parse.GetValue(blocks) },
                    KvRouter = kv.Read(parse),
                    Seed = parse.GetValue(loadFlags.SeedOption),
                };
                return await SimulateCommand.RunAsync(parse, simulation, loadFlags, parse.GetValue(json));
            }

            LoadOptions options = loadFlags.Read(parse, "http://127.0.0.1:1", "mocker");
            IWorkload workload = loadFlags.Workload(parse);
            FrontendOptions frontend = FrontendOptions.Default with { Processing = ProcessorOptions.Default with { KvRouter = kv.Read(parse) } };
            foreach (string mode in list)
            {
                RoutingBenchmark.ForMode(frontend, mode);
            }

            WorkerSettings mocker = new WorkerSettings
            {
                EngineKind = "mocker",
                ServedModelName = "mocker",
                Mocker = MockerOptions.Default with { SpeedupRatio = parse.GetValue(speedup), NumGpuBlocks = parse.GetValue(blocks) },

                // The mocker models a GPU worker: its own batch limits, not the CPU engine's 512-token steps.
                Engine = EngineOptions.Default with
                {
                    MaxNumBatchedTokens = MockerOptions.Default.MaxNumBatchedTokens,
                    MaxNumSeqs = MockerOptions.Default.MaxNumSeqs,
                },
            }.Validate();
            var setup = new RoutingBenchmark.Setup(w, parse.GetValue(blocks), parse.GetValue(speedup));
            RoutingBenchmark.Outcome outcome = await RoutingBenchmark.RunAsync(BenchWorkers.Starting(mocker), setup, list, workload, options, frontend, Console.Error, cancellationToken);
            if (parse.GetValue(json))
            {
                using Stream stdout = Console.OpenStandardOutput();
                outcome.WriteJson(stdout);
            }
            else
            {
                outcome.WriteTable(Console.Out);
            }

            return outcome.Modes.All(r => r.Report.Completed > 0) ? 0 : 1;
        });
        return command;
    }
}
