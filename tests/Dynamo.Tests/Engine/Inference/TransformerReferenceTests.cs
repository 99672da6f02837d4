using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Llm.ModelFiles;
using Xunit.Abstractions;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// <see cref="Transformer.Forward(ReadOnlySpan{int}, int, SequenceKvCache, Span{float}, bool)"/> against <see cref="ReferenceTransformer"/> (float64, full recompute) on small
/// random models of every format and architecture the loader accepts. Metric: per row max|a - b| / max|ref|, worst row.
/// </summary>
public class TransformerReferenceTests(ITestOutputHelper output)
{
    private const int PromptLength = 40;

    /// <summary>The first positions go through one batched Forward, the rest one token at a time from the KV cache.</summary>
    private const int Prefill = 28;

    /// <summary>Float32 accumulation over dims of 64..160 and two layers stays far below this.</summary>
    private const double F32Bound = 1e-4;

    private static readonly SynthModelOptions Gqa = new()
    {
        Name = "gqa", Dim = 96, HiddenDim = 160, Layers = 2, Heads = 6, KvHeads = 2, VocabSize = 300, ContextLength = 128, Tied = false, Seed = 7,
    };

    /// <summary>What <see cref="WithLlama3Scaling"/> writes, with GgufModel's fixed low/high factors 1 and 4.</summary>
    private static readonly RopeScaling Llama3Scaling = new(8f, 1f, 4f, 64);

    private static RandomGgufModel WithLlama3Scaling(RandomGgufModel model) => model with
    {
        Metadata = g =>
        {
            g.Add($"{model.Architecture}.rope.scaling.type", "llama3");
            g.Add($"{model.Architecture}.rope.scaling.factor", Llama3Scaling.Factor);
            g.Add($"{model.Architecture}.rope.scaling.original_context_length", (uint)Llama3Scaling.OriginalContextLength);
        },
    };

    private static SynthModelOptions Shape(string name) => name == "tiny" ? SynthModelOptions.Tiny : Gqa;

    private static int[] Prompt(int vocab)
    {
        var random = new Random(vocab);
        return Enumerable.Range(0, PromptLength).Select(_ => random.Next(vocab)).ToArray();
    }

    /// <summary>Logits of every prompt position: <see cref="Prefill"/> tokens in one call, then one call per token.</summary>
    private static float[] Logits(Transformer model, int[] prompt)
    {
        int vocab = model.Config.VocabSize;
        var cache = new SequenceKvCache(model.Config, prompt.Length);
        var logits = new float[prompt.Length * vocab];
        int prefill = Math.Min(Prefill, prompt.Length);
        model.Forward(prompt.AsSpan(0, prefill), 0, cache, logits, allLogits: true);
        for (int t = prefill; t < prompt.Length; t++)
        {
            model.Forward(prompt.AsSpan(t, 1), t, cache, logits.AsSpan(t * vocab, vocab));
        }

        return logits;
    }

    /// <summary>Runs the model at <paramref name="path"/> and the reference on the same loaded weights; returns the error and the model's logits.</summary>
    private (double Error, float[] Logits) Compare(string path, string label, int maxBatch = 128)
    {
        using var model = new Transformer(ModelLoader.Load(path), maxBatch);
        int[] prompt = Prompt(model.Config.VocabSize);
        float[] actual = Logits(model, prompt);
        float[] expected = new ReferenceTransformer(model.Weights).Forward(prompt);
        double error = OracleFiles.MaxRelativeError(actual, expected, model.Config.VocabSize);
        output.WriteLine($"{label}: max relative logit error {error:E2}");
        return (error, actual);
    }

    private static string Synthesize(TempDir dir, SynthModelOptions model, SynthFormat format, GgmlType type = GgmlType.F32)
    {
        string name = $"{model.Name}-{format}-{type}" + (format == SynthFormat.HuggingFace ? "" : ".bin");
        return SynthModelWriter.Write(model, new SynthOutputOptions { OutputPath = Path.Combine(dir.Path, name), Format = format, Type = type }).Path;
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("gqa")]
    public void Forward_SynthGgufF32_MatchesReference(string shape)
    {
        using var dir = new TempDir();

        // maxBatch 16 also splits the 28-token prefill into two chunks.
        (double error, _) = Compare(Synthesize(dir, Shape(shape), SynthFormat.Gguf), $"gguf F32 {shape}", maxBatch: 16);

        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
    }

    [Fact]
    public void Forward_SynthHuggingFaceF32_MatchesReferenceAndTheGgufFile()
    {
        using var dir = new TempDir();
        (_, float[] gguf) = Compare(Synthesize(dir, Gqa, SynthFormat.Gguf), "gguf F32 gqa");

        (double error, float[] hf) = Compare(Synthesize(dir, Gqa, SynthFormat.HuggingFace), "hf F32 gqa");

        double vsGguf = OracleFiles.MaxRelativeError(hf, gguf, Gqa.VocabSize);
        output.WriteLine($"hf vs gguf: {vsGguf:E2}");
        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
        Assert.True(vsGguf < F32Bound, $"HF (half-split, permuted wq/wk) and GGUF (interleaved) logits differ by {vsGguf:E2}");
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("gqa")]
    public void Forward_SynthLlama2c_MatchesReference(string shape)
    {
        using var dir = new TempDir();

        (double error, _) = Compare(Synthesize(dir, Shape(shape), SynthFormat.Llama2c), $"llama2.c {shape}");

        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
    }

    /// <remarks>
    /// The reference runs on the file's dequantized weights, so weight quantization error cancels; what remains
    /// is the activation rounding of the kernels. F16 weights are widened and multiplied with float activations:
    /// only float32 accumulation order differs, as for F32 (measured 2.8E-07). Q8_0 and Q4_0 quantize every
    /// activation row to 8 bits per block of 32 before the integer dot products: step max|x|/127, about 0.02 sigma
    /// for a block of 32 roughly normal values, so a rounding noise of ~0.6% of each activation, which passes into
    /// every dot product and compounds over the 7 matrices of each of 2 layers plus the classifier: ~sqrt(15) x 0.6%
    /// ~ 2% expected. Measured on the GQA shape: 1.4E-02 (Q8_0) and 1.4E-02 (Q4_0) worst row. 3e-2 leaves margin and
    /// still fails on any real mistake (a wrong scale, block or nibble order gives errors of order 1).
    /// </remarks>
    [Theory]
    [InlineData(GgmlType.F16, 1e-4)]
    [InlineData(GgmlType.Q8_0, 3e-2)]
    [InlineData(GgmlType.Q4_0, 3e-2)]
    public void Forward_SynthGgufQuantized_MatchesReferenceOnDequantizedWeights(GgmlType type, double bound)
    {
        using var dir = new TempDir();

        (double error, _) = Compare(Synthesize(dir, Gqa, SynthFormat.Gguf, type), $"gguf {type} gqa");

        Assert.True(error < bound, $"max relative logit error {error:E2} (bound {bound:E0})");
    }

    [Fact]
    public void Forward_Qwen2WithQkvBias_MatchesReference()
    {
        using var dir = new TempDir();
        string path = new RandomGgufModel { Architecture = "qwen2", QkvBias = true, Tied = true, RopeTheta = 1e6f, Seed = 2 }.WriteTo(dir.Path);
        using (IModelWeights weights = ModelLoader.Load(path))
        {
            Assert.Equal(RopeLayout.HalfSplit, weights.Config.RopeLayout);
            Assert.True(weights.Config.QkvBias);
        }

        (double error, _) = Compare(path, "qwen2 bias");

        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
    }

    [Fact]
    public void Forward_Qwen3WithQkNormAndWideHeads_MatchesReference()
    {
        using var dir = new TempDir();
        string path = new RandomGgufModel { Architecture = "qwen3", QkNorm = true, HeadDim = 32, RopeTheta = 1e6f, Seed = 3 }.WriteTo(dir.Path);
        using (IModelWeights weights = ModelLoader.Load(path))
        {
            Assert.Equal(RopeLayout.HalfSplit, weights.Config.RopeLayout);
            Assert.True(weights.Config.QkNorm);
            Assert.Equal(32, weights.Config.HeadDim);
        }

        (double error, _) = Compare(path, "qwen3 qk-norm head dim 32");

        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
    }

    /// <remarks>
    /// Head dim 16 and theta 1e4 give wavelengths 6.3, 19.9, 62.8, 199, ...; with an original context of 64 and the
    /// default low/high factors 1 and 4, the first pair is kept, the next two are blended and the rest divided by 8.
    /// </remarks>
    [Fact]
    public void Forward_Llama3RopeScaling_MatchesReference()
    {
        using var dir = new TempDir();
        var unscaled = new RandomGgufModel { Architecture = "llama", Seed = 4 };
        RandomGgufModel scaled = WithLlama3Scaling(unscaled);
        string plainPath = unscaled.WriteTo(Directory.CreateDirectory(Path.Combine(dir.Path, "plain")).FullName);
        string path = scaled.WriteTo(dir.Path);
        using (IModelWeights weights = ModelLoader.Load(path))
        {
            Assert.Equal(Llama3Scaling, weights.Config.RopeScaling);
        }

        (double error, float[] logits) = Compare(path, "llama3 rope scaling");
        (_, float[] plain) = Compare(plainPath, "same weights, no scaling");

        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
        Assert.True(OracleFiles.MaxRelativeError(logits, plain, unscaled.VocabSize) > 1e-3, "the scaling should change the logits");
    }

    /// <summary>
    /// llama.cpp stores Llama 3 scaling as rope_freqs.weight (freq / scaled freq per pair) instead of metadata. Given
    /// the factors of the same scaling, a file must compute the same logits as the metadata form.
    /// </summary>
    [Fact]
    public void Forward_RopeFreqsTensor_MatchesReferenceAndTheMetadataForm()
    {
        using var dir = new TempDir();
        RandomGgufModel metadataForm = WithLlama3Scaling(new RandomGgufModel { Architecture = "llama", Seed = 5 });
        int headDim = metadataForm.Dim / metadataForm.Heads;
        float[] factors = Enumerable.Range(0, headDim / 2).Select(i =>
        {
            double freq = Math.Pow(10000.0, -2.0 * i / headDim);
            return (float)(freq / ReferenceTransformer.Llama3Scaled(freq, Llama3Scaling));
        }).ToArray();
        string metadataPath = metadataForm.WriteTo(Directory.CreateDirectory(Path.Combine(dir.Path, "metadata")).FullName);
        string tensorPath = (metadataForm with { Metadata = null, RopeFreqs = factors }).WriteTo(dir.Path);

        (_, float[] expected) = Compare(metadataPath, "llama3 scaling as metadata");
        (double error, float[] actual) = Compare(tensorPath, "llama3 scaling as rope_freqs.weight");

        double vsMetadata = OracleFiles.MaxRelativeError(actual, expected, metadataForm.VocabSize);
        output.WriteLine($"rope_freqs vs metadata: {vsMetadata:E2}");
        Assert.True(error < F32Bound, $"max relative logit error {error:E2}");
        Assert.True(vsMetadata < F32Bound, $"rope_freqs and metadata forms differ by {vsMetadata:E2}");
    }
}
