using System.CommandLine;
using System.Globalization;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench</c> and its two engine benchmarks: <c>bench forward</c> (forward-pass throughput, see
/// <see cref="ForwardBenchmark"/>) and <c>bench engine</c> (the serving engine under concurrent load, see
/// <see cref="EngineBenchmark"/>); the other bench commands have their own files.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks");
        var model = new Option<string>("--model", "-m") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint", Required = true };
        var promptTokens = new Option<int>("--prompt-tokens", "-p") { Description = "Tokens of the prompt-processing test (0 skips it)", DefaultValueFactory = _ => 512 };
        var genTokens = new Option<int>("--gen-tokens", "-n") { Description = "Tokens of the generation test (0 skips it)", DefaultValueFactory = _ => 128 };
        var threads = new Option<int>("--threads", "-t") { Description = "Compute threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var repetitions = new Option<int>("--repetitions", "-r") { Description = "Timed repetitions of each test", DefaultValueFactory = _ => 3 };
        var profileOption = new Option<bool>("--profile") { Description = "Also print where each test's time goes, by phase of the forward pass" };
        var batchOption = new Option<int>("--batch", "-b") { Description = "Also decode with this many sequences a pass (tgN x B, llama-batched-bench style; 0 skips it)", DefaultValueFactory = _ => 0 };
        var batchPromptOption = new Option<int>("--batch-prompt") { Description = "Prompt tokens of each sequence of the batched test: the context its decode starts at (llama-batched-bench's -npp)", DefaultValueFactory = _ => BatchedDecode.DefaultPromptEach };
        var jsonOption = new Option<bool>("--json") { Description = "Print one JSON object on stdout (pp_tok_s, tg_tok_s, batch_tg_tok_s: medians; threads, batch, model_bytes, cpu, isa); the lines go to stderr" };
        Option<string?> kvDtypeOption = EngineFlags.KvCacheDtypeOption();
        var forward = new Command("forward", "Forward-pass throughput: ppN and tgN tokens/s, as llama-bench") { model, promptTokens, genTokens, threads, repetitions, profileOption, batchOption, batchPromptOption, jsonOption, kvDtypeOption };
        forward.SetAction(parse =>
        {
            int t = parse.GetValue(threads), reps = parse.GetValue(repetitions), pp = parse.GetValue(promptTokens), tg = parse.GetValue(genTokens), batch = parse.GetValue(batchOption);
            int batchPrompt = parse.GetValue(batchPromptOption);
            if (t < 1 || reps < 1 || pp < 0 || tg < 0)
            {
                throw new CliUsageException("--threads and --repetitions must be at least 1, token counts at least 0");
            }

            if (batch is < 0 or > 32)
            {
                throw new CliUsageException($"--batch: {batch} is outside 0..32 (0 skips the batched test)");
            }

            if (batchPrompt < 1)
            {
                throw new CliUsageException($"--batch-prompt must be at least 1 (got {batchPrompt})");
            }

            KvCacheDtype kvDtype = EngineFlags.ReadKvCacheDtype(parse, kvDtypeOption, EngineOptions.Default.KvCacheDtype);
            KernelThreads.Count = t;
            string path = parse.GetValue(model)!;
            IModelWeights weights = ModelLoader.Load(path);
            ModelConfig c = weights.Config;
            string? tooLong = pp + tg + 1 > c.ContextLength ? $"pp{pp} + tg{tg} needs {pp + tg + 1} positions"
                : batch > 0 && batchPrompt + tg > c.ContextLength ? $"--batch-prompt {batchPrompt} + tg{tg} needs {batchPrompt + tg} positions"
                : null;
            if (tooLong is not null)
            {
                weights.Dispose();
                throw new CliUsageException($"{tooLong}; the model's context length is {c.ContextLength}");
            }

            using var transformer = new Transformer(weights, maxBatch: Math.Max(1, Math.Max(Math.Min(pp, 512), batch > 0 ? Math.Max(batch, batchPrompt) : 0)));

            bool json = parse.GetValue(jsonOption);
            TextWriter lines = json ? Console.Error : Console.Out;
            string cpu = MachineInfo.CpuName(), isa = MachineInfo.Isa();
            lines.WriteLine($"model: {path} ({c.Architecture}, dim {c.Dim}, {c.Layers} layers, vocab {c.VocabSize}), threads: {t}, KV cache: {kvDtype.Name()}, CPU: {cpu} ({isa})");
            ForwardBenchmark.Result result = ForwardBenchmark.Run(transformer, pp, tg, reps, parse.GetValue(profileOption), lines, tg > 0 ? batch : 0, kvDtype, batchPrompt);
            if (json)
            {
                using var stdout = Console.OpenStandardOutput();
                using var w = new System.Text.Json.Utf8JsonWriter(stdout);
                w.WriteStartObject();
                w.WriteString("model", path);
                w.WriteNumber("model_bytes", ModelBytes(path));
                w.WriteNumber("threads", t);
                w.WriteNumber("prompt_tokens", pp);
                w.WriteNumber("gen_tokens", tg);
                w.WriteNumber("batch", batch);
                w.WriteNumber("batch_prompt_tokens", batchPrompt);
                w.WriteNumber("repetitions", reps);
                w.WriteString("kv_cache_dtype", kvDtype.Name());
                WriteRate(w, "pp_tok_s", result.PromptTokensPerSecond);
                WriteRate(w, "tg_tok_s", result.GenTokensPerSecond);
                WriteRate(w, "batch_tg_tok_s", result.BatchGenTokensPerSecond);
                w.WriteString("cpu", cpu);
                w.WriteString("isa", isa);
                w.WriteEndObject();
                w.Flush();
                stdout.WriteByte((byte)'\n');
            }

            return 0;
        });
        bench.Subcommands.Add(forward);
        bench.Subcommands.Add(CreateEngine());
        bench.Subcommands.Add(BenchRuntimeCommand.Create());
        bench.Subcommands.Add(BenchFrontendCommand.Create());
        bench.Subcommands.Add(BenchRoutingCommand.Create());
        bench.Subcommands.Add(BenchServeCommand.Create());
        bench.Subcommands.Add(BenchRouterCommand.Create());
        bench.Subcommands.Add(BenchTransferCommand.Create());
        bench.Subcommands.Add(BenchDisaggCommand.Create());
        bench.Subcommands.Add(BenchFaultsCommand.Create());
        bench.Subcommands.Add(BenchParallelCommand.Create());
        bench.Subcommands.Add(BenchCollectivesCommand.Create());
        return bench;
    }

    private static Command CreateEngine()
    {
        var model = new Option<string>("--model", "-m") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint", Required = true };
        var concurrency = new Option<string>("--concurrency", "-c") { Description = "Comma-separated concurrency levels", DefaultValueFactory = _ => "1,4,16,64" };
        var promptTokens = new Option<int>("--prompt-tokens", "-p") { Description = "Prompt tokens per request (random, no shared prefix)", DefaultValueFactory = _ => 200 };
        var outputTokens = new Option<int>("--output-tokens", "-n") { Description = "Output tokens per request (EOS ignored)", DefaultValueFactory = _ => 128 };
        var requests = new Option<int>("--requests-per-client") { Description = "Requests each client sends one after the other", DefaultValueFactory = _ => 1 };
        var prefix = new Option<int>("--shared-prefix") { Description = "Shared-prefix section: prefix tokens (capped to fit the context; 0 skips it)", DefaultValueFactory = _ => 1000 };
        var threads = new Option<int>("--threads", "-t") { Description = "Compute threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<bool>("--json") { Description = "Print the figures as one JSON object on stdout instead of the table" };
        var command = new Command("engine", "Serving engine under load: output tok/s, TTFT and ITL at several concurrencies; prefix-cache hit rate and TTFT gain")
        {
            model, concurrency, promptTokens, outputTokens, requests, prefix, threads,
        };
        EngineFlags engineFlags = EngineFlags.AddTo(command);
        command.Options.Add(json);
        command.SetAction(async (parse, cancellationToken) =>
        {
            int t = parse.GetValue(threads), p = parse.GetValue(promptTokens), n = parse.GetValue(outputTokens), perClient = parse.GetValue(requests);
            int[] levels;
            try
            {
                levels = [.. parse.GetValue(concurrency)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => int.Parse(v, CultureInfo.InvariantCulture))];
            }
            catch (FormatException)
            {
                throw new CliUsageException($"--concurrency: '{parse.GetValue(concurrency)}' is not a comma-separated list of numbers");
            }

            if (t < 1 || p < 1 || n < 1 || perClient < 1 || levels.Length == 0 || levels.Any(c => c < 1))
            {
                throw new CliUsageException("--threads, --prompt-tokens, --output-tokens, --requests-per-client and every --concurrency level must be at least 1");
            }

            KernelThreads.Count = t;
            string path = parse.GetValue(model)!;
            EngineOptions options = engineFlags.Read(parse).Validate();
            var transformer = new Transformer(ModelLoader.Load(path), maxBatch: Math.Min(options.MaxNumBatchedTokens, 512));
            await using var engine = new InferenceEngine(transformer, [], options);
            ModelConfig c = engine.ModelConfig;
            if (p + n >= engine.MaxSequenceLength)
            {
                throw new CliUsageException($"--prompt-tokens {p} + --output-tokens {n} do not fit a sequence of {engine.MaxSequenceLength} tokens (context {engine.ContextLength})");
            }

            bool asJson = parse.GetValue(json);
            TextWriter log = asJson ? Console.Error : Console.Out;
            log.WriteLine($"model: {path} ({c.Architecture}, dim {c.Dim}, {c.Layers} layers), threads {t}, KV {engine.Stats.KvBlocksTotal} blocks of {options.BlockSize}, max-num-seqs {options.MaxNumSeqs}, max-num-batched-tokens {options.MaxNumBatchedTokens}");
            var bench = new EngineBenchmark(engine, p, n, perClient, seed: 1234, log, Console.Error);
            var (results, prefixResult) = await bench.RunAsync(levels, parse.GetValue(prefix), cancellationToken);
            if (asJson)
            {
                using Stream stdout = Console.OpenStandardOutput();
                EngineBenchmark.WriteJson(stdout, path, t, p, n, results, prefixResult);
            }
            else
            {
                Console.WriteLine();
                EngineBenchmark.PrintTable(Console.Out, results, prefixResult);
            }

            return 0;
        });
        return command;
    }

    private static void WriteRate(System.Text.Json.Utf8JsonWriter w, string name, double? rate)
    {
        if (rate is double r)
        {
            w.WriteNumber(name, Math.Round(r, 2));
        }
        else
        {
            w.WriteNull(name);
        }
    }

    /// <summary>Bytes of the model: its file, or every file of its folder; a symbolic link counts as the file it names.</summary>
    private static long ModelBytes(string path) =>
        Directory.Exists(path) ? new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(Bytes) : Bytes(new FileInfo(path));

    private static long Bytes(FileInfo f) => f.LinkTarget is null ? f.Length : f.ResolveLinkTarget(returnFinalTarget: true) is FileInfo { Exists: true } t ? t.Length : 0;
}
