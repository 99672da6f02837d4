using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class SynthVocabularyTests
{
    [Fact]
    public void Synthetic_512_SpecialsBytesThenBracketedIds()
    {
        SynthVocabulary v = SynthVocabulary.Synthetic(512);

        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], v.Pieces.Take(4));
        Assert.Equal("<0xFF>", v.Pieces[258]);
        Assert.Equal("[259]", v.Pieces[259]);
        Assert.Equal("[511]", v.Pieces[511]);
        Assert.Equal([2, 3, 3, 6], v.TokenTypes.Take(4));
        Assert.Equal(6, v.TokenTypes[258]);
        Assert.Equal(1, v.TokenTypes[259]);
        Assert.All(v.Scores, s => Assert.Equal(0f, s));
    }

    [Fact]
    public void Synthetic_TooSmall_ThrowsNamingTheFlag()
    {
        var ex = Assert.Throws<ArgumentException>(() => SynthVocabulary.Synthetic(100));
        Assert.Contains("--vocab", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WriteLlama2c_RoundTrip_KeepsPiecesAndScores()
    {
        SynthVocabulary v = SynthVocabulary.Synthetic(300);
        string path = SynthTestFiles.TempPath("tok.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var s = File.Create(path))
        {
            v.WriteLlama2c(s);
        }

        SynthVocabulary back = SynthVocabulary.FromLlama2c(path, 300);

        Assert.Equal(v.Pieces, back.Pieces);
        Assert.Equal(v.TokenTypes, back.TokenTypes);
        Assert.Equal(6, BitConverter.ToInt32(File.ReadAllBytes(path), 0)); // max_token_length: "<0x00>"
    }

    [SharedFact]
    public void FromLlama2c_Llama2Tokenizer_SentencePieceFormAndTypes()
    {
        SynthVocabulary v = SynthVocabulary.FromLlama2c(SharedData.Path("models", "llama2-tokenizer", "tokenizer.bin"), 32000);

        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], v.Pieces.Take(4));
        Assert.Equal("\u2581\u2581", v.Pieces[259]);
        Assert.Equal("\u2581t", v.Pieces[260]);
        Assert.Equal(-1f, v.Scores[260]);
        Assert.Equal([2, 3, 3, 6], v.TokenTypes.Take(4));
        Assert.Equal(1, v.TokenTypes[260]);
    }

    [SharedFact]
    public void FromLlama2c_WrongVocabSize_ThrowsModelFormatException()
    {
        var ex = Assert.Throws<ModelFormatException>(() => SynthVocabulary.FromLlama2c(SharedData.Path("models", "llama2-tokenizer", "tokenizer.bin"), 512));
        Assert.Contains("32000", ex.Message, StringComparison.Ordinal);
    }
}
