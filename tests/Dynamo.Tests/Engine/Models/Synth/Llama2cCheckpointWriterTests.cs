using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Dynamo.Engine.Models.Synth;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class Llama2cCheckpointWriterTests
{
    [Fact]
    public void Write_Rand110m_MatchesReferenceSha256()
    {
        Assert.Equal("a79fec33bcd9db1edae9a408582c7d55ace39da3f1bb7868fbcc80a239e8f537", Sha256Of(SynthModelOptions.Rand110m, out long bytes));
        Assert.Equal(438_381_596, bytes);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Write_Rand1b1_MatchesReferenceSha256()
    {
        Assert.Equal("43f6559e5eac038c94308a70160edc6aaf728ad36fff85eb82a08c470aa2bf06", Sha256Of(SynthModelOptions.Rand1b1, out long bytes));
        Assert.Equal(4_400_717_852, bytes);
    }

    [Fact]
    public void Write_UntiedTiny_NegatesVocabAndAppendsClassifier()
    {
        SynthModelOptions o = SynthModelOptions.Tiny with { Tied = false };
        SynthModelLayout layout = SynthModelLayout.Create(o);
        using var stream = new MemoryStream();

        long bytes = Llama2cCheckpointWriter.Write(layout, stream);

        byte[] file = stream.ToArray();
        Assert.Equal(file.Length, bytes);
        int[] header = MemoryMarshal.Cast<byte, int>(file.AsSpan(0, 28)).ToArray();
        Assert.Equal([64, 128, 2, 4, 2, -512, 256], header);
        ReadOnlySpan<float> floats = MemoryMarshal.Cast<byte, float>(file.AsSpan(28));
        long freqFloats = 256L * 16;
        long expected = layout.ParameterCount + freqFloats;
        Assert.Equal(expected, floats.Length);
        SynthTensor output = layout.Tensors[^1];
        Assert.Equal(SynthTensorKind.Output, output.Kind);
        float[] classifier = new float[4];
        layout.Fill(output, 0, classifier);
        Assert.Equal(classifier, floats.Slice((int)(expected - output.ElementCount), 4).ToArray());
        SynthTensor freq = layout.Tensors[^2];
        Assert.Equal(SynthTensorKind.FreqCis, freq.Kind);
        Assert.All(floats.Slice((int)(expected - output.ElementCount - freqFloats), (int)freqFloats).ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Create_Tiny_DrawsOnlyMatricesInLlama2cOrder()
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny);

        SynthTensorKind[] kinds = layout.Tensors.Select(t => t.Kind).Distinct().ToArray();
        Assert.Equal(
            [SynthTensorKind.TokenEmbedding, SynthTensorKind.AttentionNorm, SynthTensorKind.Wq, SynthTensorKind.Wk, SynthTensorKind.Wv, SynthTensorKind.Wo,
             SynthTensorKind.FfnNorm, SynthTensorKind.W1, SynthTensorKind.W2, SynthTensorKind.W3, SynthTensorKind.OutputNorm, SynthTensorKind.FreqCis],
            kinds);
        long draw = 0;
        foreach (SynthTensor t in layout.Tensors)
        {
            Assert.Equal(t.Kind is not (SynthTensorKind.AttentionNorm or SynthTensorKind.FfnNorm or SynthTensorKind.OutputNorm or SynthTensorKind.FreqCis), t.IsDrawn);
            if (t.IsDrawn)
            {
                Assert.Equal(draw, t.DrawIndex);
                draw += t.ElementCount;
            }
        }

        Assert.Equal(106_816, layout.ParameterCount);
    }

    private static string Sha256Of(SynthModelOptions options, out long bytes)
    {
        using var sha = SHA256.Create();
        using (var hashing = new CryptoStream(Stream.Null, sha, CryptoStreamMode.Write))
        {
            bytes = Llama2cCheckpointWriter.Write(SynthModelLayout.Create(options), hashing);
        }

        return Convert.ToHexStringLower(sha.Hash!);
    }
}
