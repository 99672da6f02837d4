using System.CommandLine;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.Engines;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo generate</c>: prints the completion (without the prompt) on stdout as it streams, then one
/// line of counts and speeds on stderr.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (required for llama2.c checkpoints: their tokenizer.bin); overrides the model's own" };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The prompt; \"\" starts from BOS alone", DefaultValueFactory = _ => "" };
        var chat = new Option<bool>("--chat") { Description = "Wrap the prompt as a user message in the model's chat template" };
        var system = new Option<string?>("--system") { Description = "With --chat: a system message before the prompt" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 = greedy; higher = more random (0-2)", DefaultValueFactory = _ => 1.0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass (0-1]", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = all)", DefaultValueFactory = _ => 0 };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below min_p x the top probability", DefaultValueFactory = _ => 0f };
        var repetition = new Option<float>("--repetition-penalty") { Description = "Penalty for tokens already seen (1 = none)", DefaultValueFactory = _ => 1f };
        var frequency = new Option<float>("--frequency-penalty") { Description = "OpenAI frequency penalty (-2..2)", DefaultValueFactory = _ => 0f };
        var presence = new Option<float>("--presence-penalty") { Description = "OpenAI presence penalty (-2..2)", DefaultValueFactory = _ => 0f };
        var seed = new Option<ulong?>("--seed", "-s") { Description = "Seed for reproducible sampling" };
        var stop = new Option<string[]>("--stop") { Description = "A stop string (repeatable); never printed", AllowMultipleArgumentsPerToken = false };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past the end-of-sequence token" };
        var threads = new Option<int>("--threads") { Description = "Compute threads (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        Option<string?> kvDtype = EngineFlags.KvCacheDtypeOption();

        var cmd = new Command("generate", "Generate a completion from a model file and stream it to stdout")
        {
            model, tokenizer, prompt, chat, system, maxTokens, temperature, topP, topK, minP, repetition, frequency, presence, seed, stop, ignoreEos, threads, kvDtype,
        };
        cmd.SetAction(parse =>
        {
            int threadCount = parse.GetValue(threads);
            if (threadCount < 1)
            {
                throw new CliUsageException($"--threads: {threadCount} must be at least 1");
            }

            KernelThreads.Count = threadCount;
            KvCacheDtype dtype = EngineFlags.ReadKvCacheDtype(parse, kvDtype, KvCacheDtype.F16);
            SamplingParams sampling = Sampling(parse, maxTokens, temperature, topP, topK, minP, repetition, frequency, presence, seed, stop, ignoreEos);
            using LoadedModel loaded = LoadedModel.Load(parse.GetValue(model)!, parse.GetValue(tokenizer));
            IReadOnlyList<int> ids = PromptIds(loaded, parse.GetValue(prompt) ?? "", parse.GetValue(chat), parse.GetValue(system));
            using var transformer = new Transformer(loaded.Weights);
            var generator = new Generator(transformer, loaded.Tokenizer) { KvCacheDtype = dtype };
            using Stream stdout = Console.OpenStandardOutput();
            using var writer = new StreamWriter(stdout, new System.Text.UTF8Encoding(false)) { AutoFlush = false };
            foreach (GenerationStep step in generator.Generate(ids, sampling))
            {
                if (step.Text.Length > 0)
                {
                    writer.Write(step.Text);
                    writer.Flush();
                }
            }

            writer.WriteLine();
            writer.Flush();
            GenerationStats s = generator.LastStats!;
            Console.Error.WriteLine(
                $"prompt tokens: {s.PromptTokens}, generated tokens: {s.GeneratedTokens}, prefill: {s.PrefillTokensPerSecond:F1} tok/s, decode: {s.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return cmd;
    }

    private static SamplingParams Sampling(ParseResult parse, Option<int> maxTokens, Option<float> temperature, Option<float> topP, Option<int> topK,
        Option<float> minP, Option<float> repetition, Option<float> frequency, Option<float> presence, Option<ulong?> seed, Option<string[]> stop, Option<bool> ignoreEos)
    {
        var p = new SamplingParams
        {
            MaxTokens = parse.GetValue(maxTokens),
            Temperature = parse.GetValue(temperature),
            TopP = parse.GetValue(topP),
            TopK = parse.GetValue(topK),
            MinP = parse.GetValue(minP),
            RepetitionPenalty = parse.GetValue(repetition),
            FrequencyPenalty = parse.GetValue(frequency),
            PresencePenalty = parse.GetValue(presence),
            Seed = parse.GetValue(seed),
            Stop = parse.GetValue(stop) ?? [],
            IgnoreEos = parse.GetValue(ignoreEos),
        };
        try
        {
            return p.Validate();
        }
        catch (ArgumentException e)
        {
            // Name the flag rather than the API field.
            throw new CliUsageException($"--{e.ParamName?.Replace('_', '-')}: {e.Message[(e.Message.IndexOf(':') + 2)..].Split(" (Parameter")[0]}");
        }
    }

    /// <summary>The prompt as token ids: plain text with the model's BOS rule, or a chat rendered by its template.</summary>
    internal static IReadOnlyList<int> PromptIds(LoadedModel model, string prompt, bool chat, string? system)
    {
        if (chat)
        {
            var messages = new List<ChatMessage>();
            if (system is not null)
            {
                messages.Add(new ChatMessage("system", system));
            }

            messages.Add(new ChatMessage("user", prompt));
            string rendered;
            try
            {
                rendered = model.RenderChat(messages);
            }
            catch (ChatTemplateException e)
            {
                throw new CliUsageException($"chat template: {e.Message}");
            }

            // The template writes BOS itself where the model wants one.
            return model.Tokenizer.Encode(rendered, addSpecialTokens: false);
        }

        IReadOnlyList<int> ids = model.Tokenizer.Encode(prompt, addSpecialTokens: true);
        if (ids.Count == 0)
        {
            int bos = model.Tokenizer.BosTokenId
                ?? throw new CliUsageException("the prompt is empty and the model has no BOS token to start from");
            ids = [bos];
        }

        return ids;
    }
}
