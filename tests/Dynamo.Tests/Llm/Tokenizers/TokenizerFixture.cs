using System.Text;
using Dynamo.Llm.Tokenizers;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.Tokenizers;

/// <summary>The real tokenizers under ../shared, each loaded once per test class and only when first used.</summary>
public sealed class TokenizerFixture
{
    private readonly Dictionary<string, Lazy<ITokenizer>> _tokenizers;

    public TokenizerFixture()
    {
        _tokenizers = new()
        {
            ["llama3"] = new(() => TokenizerLoader.FromTokenizerJson(SharedData.Path("models", "tokenizers", "llama3"))),
            ["qwen3"] = new(() => TokenizerLoader.FromTokenizerJson(SharedData.Path("models", "tokenizers", "qwen3", "tokenizer.json"))),
            ["mistral-7b-v0.1"] = new(() => TokenizerLoader.FromTokenizerJson(SharedData.Path("models", "tokenizers", "mistral-7b-v0.1"))),
            ["tinystories-656k"] = new(() => TokenizerLoader.FromTokenizerJson(SharedData.Path("models", "tinystories-656k"))),
            ["llama2c"] = new(() => TokenizerLoader.FromLlama2c(SharedData.Path("models", "llama2-tokenizer", "tokenizer.bin"), 32000)),
            ["gguf-llama2"] = new(() => TokenizerLoader.FromGguf(GgufMetadataFromLlama2c(SharedData.Path("models", "llama2-tokenizer", "tokenizer.bin"), 32000), "llama2.gguf", recognizeControlTokensInText: false)),
            ["tok512"] = new(() => TokenizerLoader.FromLlama2c(SharedData.Path("models", "stories260K", "tok512.bin"), 512)),
            ["gguf-tok512"] = new(() => TokenizerLoader.FromGguf(GgufMetadataFromLlama2c(SharedData.Path("models", "stories260K", "tok512.bin"), 512), "stories260K.gguf")),
        };
    }

    public static IReadOnlyList<string> Names { get; } = ["llama3", "qwen3", "mistral-7b-v0.1", "tinystories-656k", "llama2c", "gguf-llama2", "tok512", "gguf-tok512"];

    public ITokenizer Get(string name) => _tokenizers[name].Value;

    /// <summary>
    /// The tokenizer.ggml.* keys llama.cpp's converter writes for a llama2.c vocabulary: spaces as "▁", BOS/EOS
    /// as control tokens "&lt;s&gt;"/"&lt;/s&gt;", ids 3-258 as byte tokens, the rest normal with their scores.
    /// </summary>
    public static Dictionary<string, object> GgufMetadataFromLlama2c(string path, int vocabSize)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        reader.ReadInt32();
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            scores[id] = reader.ReadSingle();
            string text = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
            (tokens[id], types[id]) = id switch
            {
                0 => ("<unk>", 2),
                1 => ("<s>", 3),
                2 => ("</s>", 3),
                < 259 => (text, 6),
                _ => (text.Replace(' ', '\u2581'), 1),
            };
        }

        return new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = tokens,
            ["tokenizer.ggml.scores"] = scores,
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.bos_token_id"] = 1u,
            ["tokenizer.ggml.eos_token_id"] = 2u,
            ["tokenizer.ggml.unknown_token_id"] = 0u,
            ["tokenizer.ggml.add_bos_token"] = true,
        };
    }
}
