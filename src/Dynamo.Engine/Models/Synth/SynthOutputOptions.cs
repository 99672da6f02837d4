using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>Where and how <see cref="SynthModelWriter"/> writes a synthetic model.</summary>
public sealed record SynthOutputOptions
{
    /// <summary>A file (GGUF, llama2.c) or a directory (Hugging Face; or an existing directory to put the file in).</summary>
    public string OutputPath { get; init; } = "model.gguf";
    public SynthFormat Format { get; init; } = SynthFormat.Gguf;

    /// <summary>
    /// GGUF: the type of every 2-D weight matrix (F32, F16, Q8_0, Q4_0); Hugging Face: the safetensors dtype
    /// (F32, F16, BF16); llama2.c: F32 only.
    /// </summary>
    public GgmlType Type { get; init; } = GgmlType.F32;

    /// <summary>A llama2.c tokenizer.bin whose pieces and scores become the model's vocabulary; null for the synthetic one.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>llama2.c only: where the tokenizer.bin goes; null for "&lt;model without .bin&gt;.tokenizer.bin" beside the model.</summary>
    public string? TokenizerOutputPath { get; init; }

    /// <summary>A Jinja2 chat template to store with the tokenizer (GGUF and Hugging Face formats), or null.</summary>
    public string? ChatTemplate { get; init; }

    public static SynthOutputOptions Default { get; } = new();
}
