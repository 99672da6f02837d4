using System.CommandLine;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelCards;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo worker</c>: loads a model, connects to etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS; localhost
/// by default), serves the engine on namespace.component.generate, publishes the model card, and runs
/// until Ctrl-C / SIGTERM, then leaves discovery at once.
/// </summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m", "--model-path") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (required for llama2.c checkpoints); overrides the model's own" };
        var servedName = new Option<string?>("--served-model-name") { Description = "The model name clients ask for (default: the file or folder name)" };
        var ns = new Option<string>("--namespace") { Description = "Runtime namespace", DefaultValueFactory = _ => "dynamo" };
        var component = new Option<string?>("--component") { Description = "Component name (default: backend, or prefill with --is-prefill-worker)" };
        var endpoint = new Option<string>("--endpoint") { Description = "Endpoint name", DefaultValueFactory = _ => "generate" };
        var prefill = new Option<bool>("--is-prefill-worker") { Description = "Register as a prefill worker (component 'prefill')" };
        var blockSize = new Option<int>("--block-size") { Description = "Tokens per KV block", DefaultValueFactory = _ => EngineOptions.Default.BlockSize };
        var maxSeqs = new Option<int>("--max-num-seqs") { Description = "Sequences in the running batch at most", DefaultValueFactory = _ => EngineOptions.Default.MaxNumSeqs };
        var maxTokens = new Option<int>("--max-num-batched-tokens") { Description = "Tokens one step computes at most", DefaultValueFactory = _ => EngineOptions.Default.MaxNumBatchedTokens };
        var kvMemory = new Option<long?>("--kv-cache-memory") { Description = "KV cache bytes (default: a fraction of available memory)" };
        var context = new Option<int?>("--context-length") { Description = "Context length (default: the model's)" };
        var threads = new Option<int>("--threads") { Description = "Compute threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var leaseTtl = new Option<int>("--lease-ttl") { Description = "Seconds a dead worker stays in discovery at most", DefaultValueFactory = _ => 10 };
        var command = new Command("worker", "Serve a model's engine to the rest of the system over etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS)")
        {
            model, tokenizer, servedName, ns, component, endpoint, prefill, blockSize, maxSeqs, maxTokens, kvMemory, context, threads, leaseTtl,
        };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            int t = parse.GetValue(threads);
            int ttl = parse.GetValue(leaseTtl);
            if (t < 1)
            {
                throw new CliUsageException($"--threads: {t} must be at least 1");
            }

            if (ttl < 1)
            {
                throw new CliUsageException($"--lease-ttl: {ttl} must be at least 1 second");
            }

            bool isPrefill = parse.GetValue(prefill);
            var address = new EndpointAddress(parse.GetValue(ns)!, parse.GetValue(component) ?? (isPrefill ? "prefill" : "backend"), parse.GetValue(endpoint)!);
            var options = EngineOptions.Default with
            {
                BlockSize = parse.GetValue(blockSize),
                MaxNumSeqs = parse.GetValue(maxSeqs),
                MaxNumBatchedTokens = parse.GetValue(maxTokens),
                KvCacheMemory = parse.GetValue(kvMemory),
                ContextLength = parse.GetValue(context),
            };
            options.Validate();
            KernelThreads.Count = t;
            string modelPath = parse.GetValue(model)!;
            string? tokenizerPath = parse.GetValue(tokenizer);
            string name = parse.GetValue(servedName) ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath));
            return RunAsync(address, modelPath, tokenizerPath, name, options, TimeSpan.FromSeconds(ttl), isPrefill).GetAwaiter().GetResult();
        }));
        return command;
    }

    private static async Task<int> RunAsync(EndpointAddress address, string modelPath, string? tokenizerPath, string servedName, EngineOptions options, TimeSpan leaseTtl, bool isPrefill)
    {
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal();
        using LoadedModel loaded = LoadedModel.Load(modelPath, tokenizerPath);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(leaseTtl, shutdown.Token);
        var transformer = new Transformer(loaded.Weights, maxBatch: Math.Min(options.MaxNumBatchedTokens, 512));
        await using var engine = new InferenceEngine(transformer, loaded.Tokenizer.EosTokenIds, options with { WorkerId = runtime.InstanceId });
        await using EngineWorker worker = await EngineWorker.StartAsync(runtime, engine, address, cancellationToken: shutdown.Token);
        (string format, string path) = TokenizerSource(loaded, modelPath, tokenizerPath);
        await ModelCards.PublishAsync(runtime, address,
            new ModelCardSource(servedName, format, path, engine.ContextLength, engine.BlockSize, loaded.Config.VocabSize),
            isPrefill ? "prefill" : "aggregated", shutdown.Token);
        Console.Error.WriteLine(
            $"worker: instance {EndpointAddress.FormatId(runtime.InstanceId)} serving {address} for model '{servedName}' " +
            $"(context {engine.ContextLength}, KV {engine.Stats.KvBlocksTotal} blocks of {engine.BlockSize}; {runtime.Mode}: {runtime.Discovery.Address})");
        try
        {
            await Task.Delay(Timeout.Infinite, shutdown.Token);
        }
        catch (OperationCanceledException)
        {
        }

        Console.Error.WriteLine($"worker: instance {EndpointAddress.FormatId(runtime.InstanceId)} shutting down");
        return 0;
    }

    private static (string Format, string Path) TokenizerSource(LoadedModel loaded, string modelPath, string? tokenizerPath)
    {
        if (tokenizerPath is not null)
        {
            return Directory.Exists(tokenizerPath) || tokenizerPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? ("hf", tokenizerPath) : ("llama2c", tokenizerPath);
        }

        return loaded.Weights switch
        {
            GgufModel => ("gguf", modelPath),
            SafeTensorsModel => ("hf", modelPath),
            _ => throw new CliUsageException("--tokenizer is required for this model"),
        };
    }
}
