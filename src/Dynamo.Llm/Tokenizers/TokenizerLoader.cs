using Dynamo.Llm.ModelFiles;

namespace Dynamo.Llm.Tokenizers;

/// <summary>Loads a tokenizer from the files a model ships with. Every failure is a <see cref="ModelFormatException"/>.</summary>
public static class TokenizerLoader
{
    /// <summary>
    /// A Hugging Face tokenizer: <paramref name="path"/> is a tokenizer.json or the model folder holding it.
    /// tokenizer_config.json (BOS/EOS tokens, add_bos_token) and generation_config.json (eos_token_id) beside
    /// it are read when present.
    /// </summary>
    public static ITokenizer FromTokenizerJson(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return HfTokenizerJsonReader.Read(path);
    }

    /// <summary>
    /// The tokenizer stored in GGUF metadata (tokenizer.ggml.*), as llama.cpp builds it. Control tokens
    /// spelled out in text are recognized, as a server needs for rendered chat templates.
    /// </summary>
    /// <param name="metadata">Decoded GGUF key/value pairs.</param>
    /// <param name="sourcePath">The GGUF file, named in errors.</param>
    public static ITokenizer FromGguf(IReadOnlyDictionary<string, object> metadata, string sourcePath) =>
        FromGguf(metadata, sourcePath, recognizeControlTokensInText: true);

    /// <summary>
    /// As <see cref="FromGguf(IReadOnlyDictionary{string, object}, string)"/>; with
    /// <paramref name="recognizeControlTokensInText"/> false, "&lt;s&gt;" in text is plain text, as
    /// SentencePiece itself encodes it (user-defined tokens are still recognized).
    /// </summary>
    public static ITokenizer FromGguf(IReadOnlyDictionary<string, object> metadata, string sourcePath, bool recognizeControlTokensInText) =>
        GgufTokenizerReader.Read(metadata, sourcePath, recognizeControlTokensInText);

    /// <summary>A llama2.c tokenizer.bin with <paramref name="vocabSize"/> entries (the model header's vocab_size).</summary>
    public static ITokenizer FromLlama2c(string tokenizerBinPath, int vocabSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerBinPath);
        return Llama2cTokenizerReader.Read(tokenizerBinPath, vocabSize);
    }
}
