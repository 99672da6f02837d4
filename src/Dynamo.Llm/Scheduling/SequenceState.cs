using System.Runtime.InteropServices;
using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Scheduling;

/// <summary>
/// One request as the scheduler sees it: its tokens (prompt, then generated), how many of them have their
/// KV in the cache, its block table and the chained hashes of its full blocks.
/// </summary>
public sealed class SequenceState
{
    private readonly List<int> _tokens;
    private ulong[] _blockHashes = new ulong[4];
    private ulong[] _localHashes = new ulong[4];

    /// <param name="requestId">Unique among live requests.</param>
    /// <param name="prompt">At least one token.</param>
    /// <param name="maxLength">Tokens (prompt and generated) the sequence may reach; it ends with "length" there.</param>
    /// <param name="maxNewTokens">Tokens to generate at most.</param>
    public SequenceState(string requestId, IReadOnlyList<int> prompt, int maxLength, int maxNewTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(prompt.Count, 1);
        RequestId = requestId;
        _tokens = new List<int>(Math.Min(maxLength, prompt.Count + maxNewTokens));
        _tokens.AddRange(prompt);
        PromptLength = prompt.Count;
        MaxLength = maxLength;
        MaxNewTokens = maxNewTokens;
    }

    public string RequestId { get; }

    /// <summary>Prompt then generated tokens.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    public int PromptLength { get; }

    public int MaxLength { get; }

    public int MaxNewTokens { get; }

    public int OutputLength => _tokens.Count - PromptLength;

    /// <summary>Leading tokens whose keys and values are in the cache.</summary>
    public int ComputedTokens { get; internal set; }

    /// <summary>Prompt tokens found in the prefix cache when the request was first admitted.</summary>
    public int CachedPromptTokens { get; internal set; } = -1;

    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;

    public BlockTable Blocks { get; } = new();

    /// <summary>Leading full blocks registered in the prefix cache.</summary>
    internal int CommittedBlocks { get; set; }

    /// <summary>Full blocks whose hashes are computed.</summary>
    internal int HashedBlocks { get; private set; }

    /// <summary>Order of arrival (lower first); also the preemption order (highest preempted first).</summary>
    internal long Arrival { get; set; }

    /// <summary>Times this sequence was preempted.</summary>
    public int Preemptions { get; internal set; }

    /// <summary>Whatever the engine keeps with the sequence (its sampler, its output channel).</summary>
    public object? Tag { get; set; }

    public void AppendToken(int token) => _tokens.Add(token);

    /// <summary>The chained hashes of the first <paramref name="blocks"/> full blocks, computed on demand.</summary>
    internal ReadOnlySpan<ulong> BlockHashes(int blocks, int blockSize)
    {
        EnsureHashes(blocks, blockSize);
        return _blockHashes.AsSpan(0, blocks);
    }

    internal ReadOnlySpan<ulong> LocalHashes(int blocks, int blockSize)
    {
        EnsureHashes(blocks, blockSize);
        return _localHashes.AsSpan(0, blocks);
    }

    private void EnsureHashes(int blocks, int blockSize)
    {
        if (blocks * blockSize > _tokens.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), $"{blocks} full blocks of {blockSize} need {blocks * blockSize} tokens; the sequence has {_tokens.Count}");
        }

        if (blocks > _blockHashes.Length)
        {
            int size = Math.Max(blocks, _blockHashes.Length * 2);
            Array.Resize(ref _blockHashes, size);
            Array.Resize(ref _localHashes, size);
        }

        for (int i = HashedBlocks; i < blocks; i++)
        {
            ReadOnlySpan<int> block = CollectionsMarshal.AsSpan(_tokens).Slice(i * blockSize, blockSize);
            _blockHashes[i] = BlockHasher.NextSequenceHash(i == 0 ? null : _blockHashes[i - 1], block, out _localHashes[i]);
        }

        HashedBlocks = Math.Max(HashedBlocks, blocks);
    }
}
