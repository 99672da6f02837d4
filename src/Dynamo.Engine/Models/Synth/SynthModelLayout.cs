namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// The tensors of a synthetic model in llama2.c legacy checkpoint order (export.py's legacy_export): token
/// embedding; every layer's attention RMS weight; all wq, then all wk, wv, wo; every FFN RMS weight; all w1, w2, w3;
/// the final RMS weight; the freq_cis block; the classifier when untied. The generator's stream is consumed in
/// this order by the drawn tensors only (RMS weights are 1.0 and freq_cis 0.0 without a draw).
/// </summary>
public sealed class SynthModelLayout
{
    private SynthModelLayout(SynthModelOptions options, IReadOnlyList<SynthTensor> tensors)
    {
        Options = options;
        Tensors = tensors;
    }

    public SynthModelOptions Options { get; }

    /// <summary>Every tensor, freq_cis included, in llama2.c file order.</summary>
    public IReadOnlyList<SynthTensor> Tensors { get; }

    /// <summary>The model's tensors without the llama2.c-only freq_cis block (what GGUF and Hugging Face files hold).</summary>
    public IEnumerable<SynthTensor> ModelTensors => Tensors.Where(t => t.Kind != SynthTensorKind.FreqCis);

    /// <summary>Number of parameters (freq_cis excluded).</summary>
    public long ParameterCount => ModelTensors.Sum(t => t.ElementCount);

    public static SynthModelLayout Create(SynthModelOptions options)
    {
        options.Validate();
        var tensors = new List<SynthTensor>();
        long draw = 0;

        void Drawn(SynthTensorKind kind, int layer, int rows, int cols)
        {
            var t = new SynthTensor(kind, layer, rows, cols, draw, 0f);
            draw += t.ElementCount;
            tensors.Add(t);
        }

        void PerLayer(SynthTensorKind kind, int rows, int cols)
        {
            for (int l = 0; l < options.Layers; l++)
            {
                Drawn(kind, l, rows, cols);
            }
        }

        void Norms(SynthTensorKind kind)
        {
            for (int l = 0; l < options.Layers; l++)
            {
                tensors.Add(new SynthTensor(kind, l, 1, options.Dim, -1, 1f));
            }
        }

        int dim = options.Dim, kvDim = options.KvDim, hidden = options.HiddenDim;
        Drawn(SynthTensorKind.TokenEmbedding, -1, options.VocabSize, dim);
        Norms(SynthTensorKind.AttentionNorm);
        PerLayer(SynthTensorKind.Wq, dim, dim);
        PerLayer(SynthTensorKind.Wk, kvDim, dim);
        PerLayer(SynthTensorKind.Wv, kvDim, dim);
        PerLayer(SynthTensorKind.Wo, dim, dim);
        Norms(SynthTensorKind.FfnNorm);
        PerLayer(SynthTensorKind.W1, hidden, dim);
        PerLayer(SynthTensorKind.W2, dim, hidden);
        PerLayer(SynthTensorKind.W3, hidden, dim);
        tensors.Add(new SynthTensor(SynthTensorKind.OutputNorm, -1, 1, dim, -1, 1f));
        // freqs_cos[:seq_len] then freqs_sin[:seq_len], each seq_len × head_dim/2: one block of seq_len × head_dim.
        tensors.Add(new SynthTensor(SynthTensorKind.FreqCis, -1, options.ContextLength, options.HeadDim, -1, 0f));
        if (!options.Tied)
        {
            Drawn(SynthTensorKind.Output, -1, options.VocabSize, dim);
        }

        return new SynthModelLayout(options, tensors);
    }

    /// <summary>Writes elements [<paramref name="start"/>, start + destination.Length) of <paramref name="tensor"/> (row-major).</summary>
    public void Fill(SynthTensor tensor, long start, Span<float> destination)
    {
        if (start < 0 || start + destination.Length > tensor.ElementCount)
        {
            throw new ArgumentOutOfRangeException(nameof(start), "range outside the tensor");
        }

        if (tensor.IsDrawn)
        {
            SynthRandom.Fill(Options.Seed, tensor.DrawIndex + start, destination);
        }
        else
        {
            destination.Fill(tensor.Constant);
        }
    }

    /// <summary>
    /// Streams a tensor in chunks of whole rows (at most <paramref name="buffer"/>'s length, at least one row) to
    /// <paramref name="consume"/>, which gets the chunk and the index of its first row.
    /// </summary>
    public void Stream(SynthTensor tensor, float[] buffer, Action<ReadOnlySpan<float>, int> consume)
    {
        int rowsPerChunk = Math.Max(1, buffer.Length / tensor.Cols);
        if ((long)rowsPerChunk * tensor.Cols > buffer.Length)
        {
            throw new ArgumentException($"buffer of {buffer.Length} floats is shorter than one row of {tensor.Cols}", nameof(buffer));
        }

        for (int row = 0; row < tensor.Rows; row += rowsPerChunk)
        {
            int rows = Math.Min(rowsPerChunk, tensor.Rows - row);
            Span<float> chunk = buffer.AsSpan(0, rows * tensor.Cols);
            Fill(tensor, (long)row * tensor.Cols, chunk);
            consume(chunk, row);
        }
    }
}
