namespace Dynamo.Llm.ModelCards;

/// <summary>Where a worker's tokenizer files are, and the limits it serves with: the input of Dynamo.Components' ModelCardStore.PublishAsync.</summary>
/// <param name="ServedName">The served model name.</param>
/// <param name="TokenizerFormat">"gguf", "hf" or "llama2c".</param>
/// <param name="TokenizerPath">The GGUF file, the Hugging Face directory (or tokenizer.json), or the tokenizer.bin.</param>
/// <param name="ContextLength">Context length served.</param>
/// <param name="KvBlockSize">KV block size.</param>
/// <param name="VocabSize">Vocabulary size.</param>
public sealed record ModelCardSource(string ServedName, string TokenizerFormat, string TokenizerPath, int ContextLength, int KvBlockSize, int VocabSize);
