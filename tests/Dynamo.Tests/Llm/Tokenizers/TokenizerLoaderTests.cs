using System.Text.Json;
using Dynamo.Llm.ModelFiles;
using Dynamo.Llm.Tokenizers;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.Tokenizers;

public sealed class TokenizerLoaderTests(TokenizerFixture fixture) : IClassFixture<TokenizerFixture>
{
    public static TheoryData<string, int> Llama3Rows => OracleRow.Indexes("llama3");

    public static TheoryData<string, int> Qwen3Rows => OracleRow.Indexes("qwen3");

    public static TheoryData<string, int> MistralRows => OracleRow.Indexes("mistral-7b-v0.1");

    public static TheoryData<string, int> TinyStoriesRows => OracleRow.Indexes("tinystories-656k");

    public static TheoryData<string, int> Llama2Rows => OracleRow.Indexes("llama2-sentencepiece");

    [SharedTheory]
    [MemberData(nameof(Llama3Rows))]
    [MemberData(nameof(Qwen3Rows))]
    [MemberData(nameof(MistralRows))]
    [MemberData(nameof(TinyStoriesRows))]
    public void FromTokenizerJson_OracleRow_MatchesHuggingFace(string file, int index)
    {
        var row = OracleRow.Load(file, index);
        var tokenizer = fixture.Get(file);

        Assert.Equal(row.Ids, tokenizer.Encode(row.Text, row.AddSpecialTokens));
        Assert.Equal(row.Decoded, tokenizer.Decode(row.Ids, skipSpecialTokens: false));
        Assert.Equal(row.DecodedSkipSpecialTokens, tokenizer.Decode(row.Ids, skipSpecialTokens: true));
    }

    [SharedTheory]
    [MemberData(nameof(Llama2Rows))]
    public void FromLlama2c_SentencePieceOracleRow_MatchesSentencePiece(string file, int index)
    {
        var row = OracleRow.Load(file, index);
        var tokenizer = fixture.Get("llama2c");

        Assert.Equal(row.Ids, tokenizer.Encode(row.Text, row.AddSpecialTokens));
        int[] withBos = row.Ids.Length > 0 && row.Ids[0] == 1 ? row.Ids : [1, .. row.Ids];
        Assert.Equal(row.Decoded, tokenizer.Decode(withBos, skipSpecialTokens: true));
    }

    [SharedTheory]
    [MemberData(nameof(Llama2Rows))]
    public void FromGguf_SentencePieceOracleRow_MatchesSentencePiece(string file, int index)
    {
        var row = OracleRow.Load(file, index);
        var tokenizer = fixture.Get("gguf-llama2");

        Assert.Equal(row.Ids, tokenizer.Encode(row.Text, row.AddSpecialTokens));
        Assert.Equal(row.Decoded, tokenizer.Decode(row.Ids, skipSpecialTokens: true));
    }

    [SharedFact]
    public void FromTokenizerJson_SpecialTokens_MatchConfigFiles()
    {
        var llama3 = fixture.Get("llama3");
        var qwen3 = fixture.Get("qwen3");
        var mistral = fixture.Get("mistral-7b-v0.1");
        var tiny = fixture.Get("tinystories-656k");

        Assert.Equal(128000, llama3.BosTokenId);
        Assert.Equal([128001], llama3.EosTokenIds);
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Null(qwen3.BosTokenId);
        Assert.Equal([151645], qwen3.EosTokenIds);
        Assert.True(qwen3.IsSpecial(151645));
        Assert.False(qwen3.IsSpecial(151657));
        Assert.Equal([151644, 872], qwen3.Encode("<|im_start|>user", addSpecialTokens: false));
        Assert.Equal(1, mistral.BosTokenId);
        Assert.Equal([2], mistral.EosTokenIds);
        Assert.Equal(1, tiny.BosTokenId);
        Assert.Equal([2], tiny.EosTokenIds);
        Assert.True(tiny.IsSpecial(2));
        Assert.False(tiny.IsSpecial(80));
    }

    [SharedFact]
    public void FromTokenizerJson_NfdText_EncodesAsNfc()
    {
        var qwen3 = fixture.Get("qwen3");

        Assert.Equal(qwen3.Encode("caf\u00e9 \u00c5", false), qwen3.Encode("cafe\u0301 \u212b", false));
    }

    [SharedFact]
    public void FromLlama2c_Stories260KPrompt_MatchesRunC()
    {
        var tokenizer = fixture.Get("tok512");
        var section = GreedySection("P1_once");

        Assert.Equal(section["prompt"], string.Join(' ', tokenizer.Encode("Once upon a time", addSpecialTokens: true)));
        int[] generated = section["runc"].Split(' ').Select(int.Parse).ToArray();
        Assert.Equal(section["runc_text"], tokenizer.Decode(generated, skipSpecialTokens: false));
    }

    [SharedFact]
    public void FromGguf_Stories260KVocabulary_MatchesRunCPrompt()
    {
        var tokenizer = fixture.Get("gguf-tok512");
        var section = GreedySection("P1_once");

        Assert.Equal(section["prompt"], string.Join(' ', tokenizer.Encode("Once upon a time", addSpecialTokens: true)));
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.True(tokenizer.IsSpecial(2));
        int[] generated = section["runc"].Split(' ').Select(int.Parse).ToArray();
        Assert.Equal(section["runc_text"], tokenizer.Decode([1, 403, 407, 261, 378, .. generated], skipSpecialTokens: true)[("Once upon a time".Length)..]);
    }

    [Fact]
    public void FromGguf_Gpt2Model_MergesByRankWithPreTokenizer()
    {
        string[] bytes = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabetChar((byte)b)).ToArray();
        string[] tokens = [.. bytes, "he", "hel", "Ġw", "<|end|>"];
        var metadata = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.pre"] = "default",
            ["tokenizer.ggml.tokens"] = tokens,
            ["tokenizer.ggml.token_type"] = tokens.Select(t => t == "<|end|>" ? 3 : 1).ToArray(),
            ["tokenizer.ggml.merges"] = new[] { "h e", "he l", "Ġ w" },
            ["tokenizer.ggml.eos_token_id"] = 259UL,
        };

        var tokenizer = TokenizerLoader.FromGguf(metadata, "synthetic.gguf");

        Assert.Equal([257, 'o', 258, 259], tokenizer.Encode("helo w<|end|>", addSpecialTokens: true));
        Assert.Equal("helo w<|end|>", tokenizer.Decode([257, 'o', 258, 259], skipSpecialTokens: false));
        Assert.Equal("helo w", tokenizer.Decode([257, 'o', 258, 259], skipSpecialTokens: true));
        Assert.Equal([259], tokenizer.EosTokenIds);
        Assert.Null(tokenizer.BosTokenId);
    }

    [Fact]
    public void FromGguf_EndOfTurnControlTokens_EndGenerationBesideEos()
    {
        string[] bytes = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabetChar((byte)b)).ToArray();
        string[] tokens = [.. bytes, "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>"];
        var metadata = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.pre"] = "default",
            ["tokenizer.ggml.tokens"] = tokens,
            // <|eot_id|> is a plain (user-defined) token here, so it must not end generation.
            ["tokenizer.ggml.token_type"] = tokens.Select((t, i) => i < 256 ? 1 : t == "<|eot_id|>" ? 4 : 3).ToArray(),
            ["tokenizer.ggml.merges"] = Array.Empty<string>(),
            ["tokenizer.ggml.eos_token_id"] = 256U,
        };

        var tokenizer = TokenizerLoader.FromGguf(metadata, "chatml.gguf");

        Assert.Equal([256, 258], tokenizer.EosTokenIds.Order());
    }

    [Fact]
    public void FromGguf_UnknownModel_ThrowsModelFormatException()
    {
        var metadata = new Dictionary<string, object> { ["tokenizer.ggml.model"] = "rwkv", ["tokenizer.ggml.tokens"] = new[] { "a" } };

        var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.FromGguf(metadata, "x.gguf"));
        Assert.Equal("x.gguf", e.Path);
        Assert.Contains("rwkv", e.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void FromTokenizerJson_MissingFile_ThrowsModelFormatException()
    {
        string path = Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "tokenizer.json");

        var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.FromTokenizerJson(path));
        Assert.Equal(path, e.Path);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("{\"model\": {\"type\": \"BPE\"}}")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}, \"normalizer\": null, \"pre_tokenizer\": null, \"decoder\": null, \"post_processor\": null}")]
    public void FromTokenizerJson_MalformedFile_ThrowsModelFormatException(string json)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, json);

            var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.FromTokenizerJson(path));
            Assert.Equal(path, e.Path);
            Assert.DoesNotContain('\n', e.Problem);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void FromLlama2c_TruncatedFile_ThrowsModelFormatException()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, [7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, (byte)'a']);

            var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.FromLlama2c(path, 512));
            Assert.Contains("truncated", e.Problem, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string ByteLevelAlphabetChar(byte b)
    {
        bool printable = b is >= (byte)'!' and <= (byte)'~' or >= 0xA1 and <= 0xAC or >= 0xAE;
        int shifted = 256 + Enumerable.Range(0, b).Count(x => !(x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE));
        return ((char)(printable ? b : shifted)).ToString();
    }

    private static Dictionary<string, string> GreedySection(string name)
    {
        var result = new Dictionary<string, string>();
        bool inSection = false;
        foreach (string line in File.ReadLines(SharedData.Path("oracle", "stories260K_greedy.txt")))
        {
            if (line.StartsWith('['))
            {
                inSection = line == $"[{name}]";
                continue;
            }

            int colon = line.IndexOf(": ", StringComparison.Ordinal);
            if (!inSection || colon < 0)
            {
                continue;
            }

            string key = line[..colon].Split(' ')[0];
            string value = line[(colon + 2)..];
            result[key] = value.StartsWith('"') ? JsonSerializer.Deserialize<string>(value)! : value;
        }

        return result;
    }
}
