using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Dynamo.Cli.Components;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Parallel;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench parallel</c>: the forward pass at each --tp and --pp size (rank 0 here; the other ranks as `worker`
/// processes, as a tensor- or pipeline-parallel worker runs them), with --threads compute threads per rank; see
/// <see cref="ParallelBenchmark"/>.
/// </summary>
internal static class BenchParallelCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint", Required = true };
        var sizes = new Option<string>("--tp") { Description = "Comma-separated tensor-parallel sizes", DefaultValueFactory = _ => "1,2" };
        var stageSizes = new Option<string>("--pp") { Description = "Comma-separated pipeline-parallel sizes (empty: none)", DefaultValueFactory = _ => "" };
        var microBatches = new Option<int?>("--pp-micro-batches") { Description = "Micro-batches of a pipelined pass (default: one per stage)" };
        var batch = new Option<int>("--batch", "-b") { Description = "Sequences decoding together in the batched generation test", DefaultValueFactory = _ => 4 };
        var promptTokens = new Option<int>("--prompt-tokens", "-p") { Description = "Tokens of the prompt-processing test", DefaultValueFactory = _ => 128 };
        var genTokens = new Option<int>("--gen-tokens", "-n") { Description = "Tokens of the generation test", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads", "-t") { Description = "Compute threads per rank (one core per rank: 1)", DefaultValueFactory = _ => 1 };
        var repetitions = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions of each test (the best counts)", DefaultValueFactory = _ => 3 };
        var allReduce = new Option<string>("--all-reduce-floats") { Description = "Comma-separated all-reduce sizes in floats (empty: skip)", DefaultValueFactory = _ => "1,64,768,4096,65536,1048576,4194304" };
        var command = new Command("parallel", "Tensor and pipeline parallelism: tok/s per --tp and --pp size, communication share, memory per rank, all-reduce latency and bandwidth, and a cost model for other links")
        {
            model, sizes, stageSizes, microBatches, batch, promptTokens, genTokens, threads, repetitions, allReduce,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            int[] tps = ParseList(parse.GetValue(sizes)!, "--tp");
            int[] pps = parse.GetValue(stageSizes) is { Length: > 0 } stages ? ParseList(stages, "--pp") : [];
            int b = parse.GetValue(batch);
            int? m = parse.GetValue(microBatches);
            int[] floats = parse.GetValue(allReduce) is { Length: > 0 } a ? ParseList(a, "--all-reduce-floats") : [];
            int pp = parse.GetValue(promptTokens), tg = parse.GetValue(genTokens), t = parse.GetValue(threads), reps = parse.GetValue(repetitions);
            if (pp < 1 || tg < 1 || t < 1 || reps < 1 || b < 1 || m < 1 || tps.Any(n => n < 1) || pps.Any(n => n < 2))
            {
                throw new CliUsageException("--prompt-tokens, --gen-tokens, --threads, --repetitions, --batch, --pp-micro-batches and every --tp size must be at least 1, every --pp size at least 2");
            }

            string path = parse.GetValue(model)!;
            KernelThreads.Count = t;
            int maxBatch = Math.Min(pp, 512);
            var rows = new List<ParallelBenchmark.Row>();
            var reduceRows = new List<ParallelBenchmark.AllReduceRow>();
            ModelConfig? config = null;
            Console.Error.WriteLine($"bench parallel: {path}; {t} thread(s) per rank; CPU: {MachineInfo.CpuName()}");
            foreach ((int n, bool pipeline) in tps.Select(n => (n, false)).Concat(pps.Select(n => (n, true))))
            {
                if (n == 1)
                {
                    using var whole = new Transformer(ModelLoader.Load(path), maxBatch);
                    config = whole.Config;
                    long weights = whole.Weights.Tensors.Values.Sum(x => x.ByteLength);
                    rows.Add(ParallelBenchmark.Measure(whole, "tp", 1, pp, tg, b, reps, () => null, weights));
                    continue;
                }

                var settings = new WorkerSettings
                {
                    ModelPath = path,
                    Threads = t,
                    Engine = Dynamo.Engine.Serving.EngineOptions.Default with { MaxNumBatchedTokens = maxBatch },
                    TensorParallel = new TensorParallelSettings { Size = n, Pipeline = pipeline },
                };
                string init = TensorParallelRanks.ResolveInitAddress(settings.TensorParallel);
                IModelWeights full = ModelLoader.Load(path);
                List<Process> ranks;
                try
                {
                    ranks = TensorParallelRanks.StartLocalRanks(settings, full.Config, init, Console.Error);
                }
                catch
                {
                    full.Dispose();
                    throw;
                }

                try
                {
                    (IModelWeights part, ICollectiveGroup group) = await TensorParallelRanks.LoadAndJoinAsync(settings.TensorParallel, init, path, full, Console.Error, cancellationToken);
                    using (group)
                    {
                        using var leader = new Transformer(part, TensorParallelRanks.MaxBatch(settings), group);
                        if (part is PipelineStageWeights stage)
                        {
                            leader.MicroBatches = m ?? n;
                            config = stage.FullConfig;

                            // Rank 1's weights: a middle or last stage's layers (rank 0's resident set is this process).
                            rows.Add(ParallelBenchmark.Measure(leader, "pp", n, pp, tg, b, reps, () => ResidentBytes(ranks[0]), StageBytes(path, n, 1)));
                            continue;
                        }

                        var shard = (ShardedWeights)part;
                        config = shard.FullConfig;
                        rows.Add(ParallelBenchmark.Measure(leader, "tp", n, pp, tg, b, reps, () => ResidentBytes(ranks[0]), shard.ViewBytes + shard.CopiedBytes));
                        reduceRows.AddRange(ParallelBenchmark.AllReduce(leader, n, floats));
                    }
                }
                finally
                {
                    await TensorParallelRanks.WaitForAsync(ranks, Console.Error);
                }
            }

            ParallelBenchmark.Print(rows, reduceRows, config!, pp, tg, b, Console.Out);
            return 0;
        });
        return command;
    }

    private static int[] ParseList(string text, string flag)
    {
        try
        {
            return [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture))];
        }
        catch (FormatException)
        {
            throw new CliUsageException($"{flag}: '{text}' is not a comma-separated list of whole numbers");
        }
    }

    /// <summary>The weights stage <paramref name="stage"/> of <paramref name="stages"/> maps (its layers, and the embedding or output it holds).</summary>
    private static long StageBytes(string path, int stages, int stage)
    {
        using var part = PipelineStageWeights.Create(ModelLoader.Load(path), stage, stages);
        return part.ViewBytes;
    }

    /// <summary>VmRSS of a rank process (Linux), null elsewhere.</summary>
    private static long? ResidentBytes(Process p)
    {
        try
        {
            string? line = File.ReadLines($"/proc/{p.Id}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? null : long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
