using System.Numerics.Tensors;
using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The batched-decode test of the benchmarks (llama-batched-bench style): <see cref="Batch"/> sequences, each with a
/// random prompt of <see cref="PromptEach"/> tokens (16 unless given: the context the decode starts at) in its own
/// blocks of a paged pool, then decode passes of all of them together, one token each, greedy. <see cref="Generate"/> runs <see cref="GenTokens"/> such passes from the same positions every time,
/// so repetitions time the same work.
/// </summary>
internal sealed class BatchedDecode
{
    /// <summary>Prompt tokens of each sequence unless given (one block).</summary>
    public const int DefaultPromptEach = 16;

    private const int BlockSize = 16;

    private readonly Transformer _transformer;
    private readonly PagedKvCache _pool;
    private readonly int[][] _tables;
    private readonly float[] _logits;
    private readonly SequenceSlice[] _slices;
    private readonly int[] _step;

    /// <summary>
    /// Prefills each sequence's prompt of <paramref name="promptEach"/> tokens, one sequence a pass (needs a transformer
    /// built for max(<paramref name="batch"/>, <paramref name="promptEach"/>) tokens); keys and values as
    /// <paramref name="kvDtype"/> (F32 unless given).
    /// </summary>
    public BatchedDecode(Transformer transformer, int batch, int genTokens, Random random, KvCacheDtype kvDtype = KvCacheDtype.F32, int promptEach = DefaultPromptEach)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentOutOfRangeException.ThrowIfLessThan(promptEach, 1);
        _transformer = transformer;
        Batch = batch;
        GenTokens = genTokens;
        PromptEach = promptEach;
        ModelConfig c = transformer.Config;
        int blocksEach = (PromptEach + genTokens + BlockSize - 1) / BlockSize;
        _pool = new PagedKvCache(c, blocksEach * batch, BlockSize, kvDtype);
        _tables = [.. Enumerable.Range(0, batch).Select(s => Enumerable.Range(s * blocksEach, blocksEach).ToArray())];
        _logits = new float[batch * c.VocabSize];
        _slices = new SequenceSlice[batch];
        _step = new int[batch];
        int[] tokens = new int[PromptEach];
        for (int s = 0; s < batch; s++)
        {
            for (int t = 0; t < PromptEach; t++)
            {
                tokens[t] = random.Next(c.VocabSize);
            }

            transformer.Forward(tokens, [new SequenceSlice(0, PromptEach, 0, _tables[s], WantLogits: true)], _pool, _logits.AsSpan(s * c.VocabSize, c.VocabSize));
        }
    }

    /// <summary>Prompt tokens of each sequence: its decode passes start at this position.</summary>
    public int PromptEach { get; }

    /// <summary>Sequences decoding together.</summary>
    public int Batch { get; }

    /// <summary>Decode passes of one <see cref="Generate"/>.</summary>
    public int GenTokens { get; }

    /// <summary>Tokens one <see cref="Generate"/> produces (<see cref="Batch"/> x <see cref="GenTokens"/>).</summary>
    public int TokensPerRun => Batch * GenTokens;

    /// <summary>Runs the decode passes.</summary>
    public void Generate()
    {
        int vocab = _transformer.Config.VocabSize;
        for (int i = 0; i < GenTokens; i++)
        {
            for (int s = 0; s < Batch; s++)
            {
                _step[s] = i == 0 ? 1 : TensorPrimitives.IndexOfMax<float>(_logits.AsSpan(s * vocab, vocab));
                _slices[s] = new SequenceSlice(s, 1, PromptEach + i, _tables[s], WantLogits: true);
            }

            _transformer.Forward(_step, _slices, _pool, _logits);
        }
    }
}
