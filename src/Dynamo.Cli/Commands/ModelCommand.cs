using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Cli.Commands;

/// <summary><c>dynamo model ...</c>: model file tools (synth).</summary>
internal static class ModelCommand
{
    public static Command Create()
    {
        var model = new Command("model", "Model file tools");
        model.Subcommands.Add(CreateSynth());
        return model;
    }

    private static Command CreateSynth()
    {
        var preset = new Option<string?>("--preset") { Description = "A benchmark shape: tiny (~100K parameters, for tests), 110m (seed 110, tied) or 1b1 (TinyLlama shape, seed 1100, untied); shape flags override it" };
        var dim = new Option<int?>("--dim") { Description = "Model (embedding) dimension" };
        var hiddenDim = new Option<int?>("--hidden-dim") { Description = "FFN hidden dimension" };
        var layers = new Option<int?>("--layers") { Description = "Number of transformer blocks" };
        var heads = new Option<int?>("--heads") { Description = "Attention heads" };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Key/value heads (grouped-query attention)" };
        var vocab = new Option<int?>("--vocab") { Description = "Vocabulary size" };
        var context = new Option<int?>("--context-length") { Description = "Maximum context length (llama2.c seq_len)" };
        var tied = new Option<bool>("--tied") { Description = "Classifier = token embedding (no output.weight)" };
        var untied = new Option<bool>("--untied") { Description = "Separate classifier (output.weight; llama2.c header vocab negated)" };
        var seed = new Option<ulong?>("--seed") { Description = "splitmix64 seed of the weight generator" };
        var type = new Option<string>("--type")
        {
            Description = "Type of the 2-D weight matrices: F32, F16, Q8_0, Q4_0 for gguf (norms stay F32; Q4_0 quantizes every matrix, "
                + "token_embd and output included, like llama-quantize --pure, whose default Q4_0 mix would keep output.weight in Q6_K); "
                + "F32, F16, BF16 for hf; F32 for llama2c",
            DefaultValueFactory = _ => "F32",
        };
        var format = new Option<string>("--format") { Description = "gguf (one file), hf (a Hugging Face directory) or llama2c (checkpoint + tokenizer.bin)", DefaultValueFactory = _ => "gguf" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "A llama2.c tokenizer.bin whose pieces and scores become the vocabulary (default: synthetic <unk> <s> </s>, byte pieces, then \"[i]\")" };
        var tokenizerOut = new Option<string?>("--tokenizer-out") { Description = "llama2c: where to write tokenizer.bin (default: MODEL.tokenizer.bin beside MODEL.bin)" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "A chat template to store with the tokenizer: \"chatml\" or a Jinja2 template file (gguf and hf formats)" };
        var output = new Option<string>("--output", "-o") { Description = "Output file (gguf, llama2c; or an existing directory) or directory (hf)", Required = true };

        var cmd = new Command("synth", "Write a random-weight Llama model (the benchmark models of anchors.md) as GGUF, Hugging Face or llama2.c files");
        foreach (Option o in new Option[] { preset, dim, hiddenDim, layers, heads, kvHeads, vocab, context, tied, untied, seed, type, format, tokenizer, tokenizerOut, chatTemplate, output })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(parse =>
        {
            string? presetName = parse.GetValue(preset);
            SynthModelOptions shape = SynthModelOptions.Default;
            if (presetName is not null)
            {
                shape = SynthModelOptions.FromPreset(presetName)
                    ?? throw new CliUsageException($"--preset {presetName}: unknown (use {string.Join(", ", SynthModelOptions.PresetNames)})");
            }

            if (parse.GetValue(tied) && parse.GetValue(untied))
            {
                throw new CliUsageException("--tied and --untied are exclusive");
            }

            shape = shape with
            {
                Dim = parse.GetValue(dim) ?? shape.Dim,
                HiddenDim = parse.GetValue(hiddenDim) ?? shape.HiddenDim,
                Layers = parse.GetValue(layers) ?? shape.Layers,
                Heads = parse.GetValue(heads) ?? shape.Heads,
                KvHeads = parse.GetValue(kvHeads) ?? shape.KvHeads,
                VocabSize = parse.GetValue(vocab) ?? shape.VocabSize,
                ContextLength = parse.GetValue(context) ?? shape.ContextLength,
                Tied = parse.GetValue(tied) || (!parse.GetValue(untied) && shape.Tied),
                Seed = parse.GetValue(seed) ?? shape.Seed,
            };
            try
            {
                shape.Validate();
            }
            catch (ArgumentException ex)
            {
                throw new CliUsageException(ex.Message);
            }

            var target = new SynthOutputOptions
            {
                OutputPath = parse.GetValue(output)!,
                Format = ParseFormat(parse.GetValue(format)!),
                Type = ParseType(parse.GetValue(type)!),
                TokenizerPath = parse.GetValue(tokenizer),
                TokenizerOutputPath = parse.GetValue(tokenizerOut),
                ChatTemplate = ResolveChatTemplate(parse.GetValue(chatTemplate)),
            };
            if (target.ChatTemplate is not null && target.Format == SynthFormat.Llama2c)
            {
                throw new CliUsageException("--chat-template: llama2.c checkpoints cannot carry a chat template");
            }

            if (target.TokenizerOutputPath is not null && target.Format != SynthFormat.Llama2c)
            {
                throw new CliUsageException("--tokenizer-out applies to --format llama2c only");
            }

            var clock = Stopwatch.StartNew();
            SynthResult result = SynthModelWriter.Write(shape, target);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Path}: {result.Parameters} parameters, {result.Bytes} bytes, {clock.Elapsed.TotalSeconds:F1} s"));
            return 0;
        });
        return cmd;
    }

    private static string? ResolveChatTemplate(string? value)
    {
        if (value is null)
        {
            return null;
        }

        string source = BuiltinChatTemplates.ByName(value)
            ?? (File.Exists(value) ? File.ReadAllText(value) : throw new CliUsageException($"--chat-template: '{value}' is neither a built-in template (chatml) nor a file"));
        try
        {
            ChatTemplate.Parse(source);
        }
        catch (ChatTemplateException e)
        {
            throw new CliUsageException($"--chat-template: {e.Message}");
        }

        return source;
    }

    private static SynthFormat ParseFormat(string value) => value switch
    {
        "gguf" => SynthFormat.Gguf,
        "hf" => SynthFormat.HuggingFace,
        "llama2c" => SynthFormat.Llama2c,
        _ => throw new CliUsageException($"--format {value}: unknown (use gguf, hf or llama2c)"),
    };

    private static GgmlType ParseType(string value) => value.ToUpperInvariant() switch
    {
        "F32" => GgmlType.F32,
        "F16" => GgmlType.F16,
        "BF16" => GgmlType.BF16,
        "Q8_0" => GgmlType.Q8_0,
        "Q4_0" => GgmlType.Q4_0,
        _ => throw new CliUsageException($"--type {value}: unknown (use F32, F16, BF16, Q8_0 or Q4_0)"),
    };
}
