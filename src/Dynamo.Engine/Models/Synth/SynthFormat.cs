namespace Dynamo.Engine.Models.Synth;

/// <summary>The file formats <see cref="SynthModelWriter"/> writes.</summary>
public enum SynthFormat
{
    /// <summary>One GGUF v3 file, llama architecture.</summary>
    Gguf = 0,

    /// <summary>A Hugging Face directory: config.json, model.safetensors, tokenizer.json and friends.</summary>
    HuggingFace = 1,

    /// <summary>A llama2.c legacy checkpoint (float32) and a tokenizer.bin beside it.</summary>
    Llama2c = 2,
}
