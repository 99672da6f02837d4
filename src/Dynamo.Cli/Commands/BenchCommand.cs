using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench engine</c>: prompt processing (ppN: N tokens in one forward) and text generation
/// (tgN: N single-token forwards) in tokens per second, mean and standard deviation over repetitions,
/// after one untimed warm-up — the two figures llama-bench reports, so they compare directly with
/// ../shared/anchors.md.
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
        var engine = new Command("engine", "Engine throughput: ppN and tgN tokens/s, as llama-bench") { model, promptTokens, genTokens, threads, repetitions };
        engine.SetAction(parse => CliErrors.Run(() =>
        {
            int t = parse.GetValue(threads), reps = parse.GetValue(repetitions), pp = parse.GetValue(promptTokens), tg = parse.GetValue(genTokens);
            if (t < 1 || reps < 1 || pp < 0 || tg < 0)
            {
                throw new CliUsageException("--threads and --repetitions must be at least 1, token counts at least 0");
            }

            KernelThreads.Count = t;
            string path = parse.GetValue(model)!;
            using var transformer = new Transformer(ModelLoader.Load(path), maxBatch: Math.Max(1, Math.Min(pp, 512)));
            ModelConfig c = transformer.Config;
            if (pp + tg + 1 > c.ContextLength)
            {
                throw new CliUsageException($"pp{pp} + tg{tg} needs {pp + tg + 1} positions; the model's context length is {c.ContextLength}");
            }

            var random = new Random(1234);
            int[] prompt = Enumerable.Range(0, Math.Max(pp, 1)).Select(_ => random.Next(c.VocabSize)).ToArray();
            var cache = new KvCache(c, Math.Max(pp, tg + 1));
            var logits = new float[c.VocabSize];
            Console.WriteLine($"model: {path} ({c.Architecture}, dim {c.Dim}, {c.Layers} layers, vocab {c.VocabSize}), threads: {t}");
            if (pp > 0)
            {
                transformer.Forward(prompt, 0, cache, logits);
                Report($"pp{pp}", pp, Time(reps, () => transformer.Forward(prompt, 0, cache, logits)));
            }

            if (tg > 0)
            {
                void Generate()
                {
                    int token = 1;
                    for (int i = 0; i < tg; i++)
                    {
                        transformer.Forward([token], i, cache, logits);
                        token = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(logits);
                    }
                }

                Generate();
                Report($"tg{tg}", tg, Time(reps, Generate));
            }

            return 0;
        }));
        bench.Subcommands.Add(engine);
        return bench;
    }

    private static double[] Time(int repetitions, Action action)
    {
        var seconds = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            seconds[i] = clock.Elapsed.TotalSeconds;
        }

        return seconds;
    }

    private static void Report(string test, int tokens, double[] seconds)
    {
        double[] rates = seconds.Select(s => tokens / s).ToArray();
        double mean = rates.Average();
        double sd = rates.Length > 1 ? Math.Sqrt(rates.Sum(r => (r - mean) * (r - mean)) / (rates.Length - 1)) : 0;
        double median = rates.Order().ElementAt(rates.Length / 2);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{test}: {mean:F1} ± {sd:F1} tok/s (median {median:F1}, {rates.Length} runs)"));
    }
}
