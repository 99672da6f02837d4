using System.Buffers.Binary;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Parallel;

namespace Dynamo.Engine.Inference;

/// <summary>
/// Tensor parallelism: each rank holds its <see cref="ShardedWeights"/> and computes its heads, its feed-forward units
/// and its vocabulary rows; the partial outputs of the embedding, of each attention output projection and of each
/// feed-forward down projection are summed over ranks (one all-reduce each, every rank then holds the same bits), and
/// the logits are gathered on rank 0. Rank 0 is the one the engine drives: before each pass it broadcasts the pass's
/// plan (tokens, positions, block tables), and every other rank runs <see cref="Follow"/>, which receives plans and runs
/// the same passes on its own KV cache (its heads of the same blocks). Every rank therefore makes the same collective
/// calls in the same order.
/// </summary>
public sealed partial class Transformer
{
    private enum PlanKind
    {
        /// <summary>A pass over the engine's block pool: block count and size, the slices and their block tables.</summary>
        Pool = 1,

        /// <summary>A pass over a single-sequence cache of the leader's (warm-up, generate): its id and capacity.</summary>
        Scratch = 2,

        /// <summary>Nothing to run: the leader is idle and alive.</summary>
        KeepAlive = 3,

        /// <summary>The leader is shutting down: followers return.</summary>
        Stop = 4,

        /// <summary>Each rank's keys and values of some blocks, gathered on rank 0 (a prefill worker's KV going out).</summary>
        ExportKv = 5,

        /// <summary>Keys and values of every head, broadcast next; each rank stores its heads (KV coming in).</summary>
        ImportKv = 6,

        /// <summary>A measurement: some all-reduces of a given size (bench parallel).</summary>
        Probe = 7,

        /// <summary>
        /// Each rank pushes its keys and values of some blocks, its heads only, to a decode worker's transfer address
        /// (one part of the whole each), then the ranks' results are gathered on rank 0.
        /// </summary>
        PushKv = 8,
    }

    /// <summary>The floats of a rank's push result gathered on rank 0: ok, bytes (3 x 16 bits), microseconds (3 x 16 bits), message length, message bytes.</summary>
    private const int PushStatusFloats = 8 + MaxPushMessageBytes;

    private const int MaxPushMessageBytes = 1016;

    private const int MaxScratchCaches = 4;

    private readonly ICollectiveGroup? _group;
    private readonly ShardedWeights? _shard;
    private readonly int _vocabStart;
    private readonly int _vocabCount;
    private readonly float[] _logitShard = [];
    private readonly float[] _gathered = [];
    private byte[] _plan = new byte[4096];
    private bool _stopped;

    /// <summary>This rank's group, or null when this process runs the whole model.</summary>
    public ICollectiveGroup? Group => _group;

    /// <summary>True on every rank but 0 of a tensor-parallel model: it runs <see cref="Follow"/>, never Forward.</summary>
    public bool IsFollower => _group is { Size: > 1, Rank: > 0 };

    /// <summary>
    /// Rank 0, idle: tells the followers it is alive and hears back from each (they wait for the next plan, and a group
    /// times out a rank that stays silent). The engine calls it every second or so while it has nothing to run.
    /// </summary>
    public void KeepAlive()
    {
        if (_group is { Size: > 1, Rank: 0 } g && !_stopped)
        {
            g.Broadcast(new[] { (byte)PlanKind.KeepAlive, (byte)0, (byte)0, (byte)0 });

            // A round trip: a rank that stopped answering is found within the group's timeout even while idle.
            Span<float> ping = [0];
            g.AllReduceSum(ping);
        }
    }

    /// <summary>
    /// A follower's life: receives each plan rank 0 broadcasts and runs that pass on this rank's shard, until rank 0
    /// stops (returns) or the group breaks (<see cref="CollectiveException"/>, naming the rank that was lost).
    /// </summary>
    public void Follow(CancellationToken cancellationToken = default)
    {
        if (!IsFollower)
        {
            throw new InvalidOperationException("only ranks 1.. of a tensor-parallel group follow; rank 0 is driven by the engine");
        }

        ICollectiveGroup g = _group!;
        PagedKvCache? pool = null;
        var scratch = new List<SequenceKvCache>();
        var scratchIds = new List<long>();
        int[] tokens = new int[_maxBatch];
        var slices = new List<SequenceSlice>();
        while (!cancellationToken.IsCancellationRequested)
        {
            ReadOnlySpan<byte> plan = g.Broadcast(ReadOnlyMemory<byte>.Empty).Span;
            var kind = (PlanKind)ReadInt(plan, 0);
            switch (kind)
            {
                case PlanKind.Stop:
                    return;
                case PlanKind.KeepAlive:
                {
                    Span<float> ping = [0];
                    g.AllReduceSum(ping);
                    continue;
                }

                case PlanKind.Pool or PlanKind.Scratch:
                    break;
                case PlanKind.Probe:
                    RunProbe(ReadInt(plan, 4), ReadInt(plan, 8), null);
                    continue;
                case PlanKind.ExportKv or PlanKind.ImportKv or PlanKind.PushKv:
                {
                    int p = 4;
                    int blockCount = Next(plan, ref p), blockSize = Next(plan, ref p);
                    KvCacheDtype kvDtype = NextDtype(plan, ref p);
                    int tokenCount = Next(plan, ref p);
                    int[] blocks = new int[Next(plan, ref p)];
                    for (int b = 0; b < blocks.Length; b++)
                    {
                        blocks[b] = Next(plan, ref p);
                    }

                    KvPushTarget? target = kind == PlanKind.PushKv ? new KvPushTarget(NextText(plan, ref p), NextText(plan, ref p)) : null;

                    if (pool is null || pool.BlockCount != blockCount || pool.BlockSize != blockSize || pool.Dtype != kvDtype)
                    {
                        pool = new PagedKvCache(Config, blockCount, blockSize, kvDtype);
                    }

                    if (target is not null)
                    {
                        PushShard(pool, blocks, tokenCount, target);
                    }
                    else if (kind == PlanKind.ExportKv)
                    {
                        ExportShard(pool, blocks, tokenCount, Span<byte>.Empty);
                    }
                    else
                    {
                        ImportShard(pool, blocks, tokenCount, g.Broadcast(ReadOnlyMemory<byte>.Empty).Span);
                    }

                    continue;
                }

                default:
                    throw new CollectiveException($"rank {g.Rank}: rank 0 sent a plan of unknown kind {(int)kind}", 0);
            }

            int at = 4;
            int maxBatch = Next(plan, ref at);
            if (maxBatch != _maxBatch)
            {
                throw new CollectiveException($"rank {g.Rank} runs passes of {_maxBatch} tokens, rank 0 of {maxBatch}: start every rank with the same --max-num-batched-tokens", 0);
            }

            bool everyToken = Next(plan, ref at) != 0;
            int microBatches = Next(plan, ref at);
            if (microBatches < 1)
            {
                throw new CollectiveException($"rank {g.Rank}: rank 0 sent a plan of {microBatches} micro-batches", 0);
            }

            KvCacheDtype dtype = NextDtype(plan, ref at);
            PagedKvCache cache;
            if (kind == PlanKind.Pool)
            {
                int blockCount = Next(plan, ref at), blockSize = Next(plan, ref at);
                if (pool is null || pool.BlockCount != blockCount || pool.BlockSize != blockSize || pool.Dtype != dtype)
                {
                    pool = new PagedKvCache(Config, blockCount, blockSize, dtype);
                }

                cache = pool;
            }
            else
            {
                long id = (long)(uint)Next(plan, ref at) | ((long)Next(plan, ref at) << 32);
                int capacity = Next(plan, ref at);
                int i = scratchIds.IndexOf(id);
                if (i < 0)
                {
                    if (scratch.Count == MaxScratchCaches)
                    {
                        scratch.RemoveAt(0);
                        scratchIds.RemoveAt(0);
                    }

                    scratch.Add(new SequenceKvCache(Config, capacity, dtype));
                    scratchIds.Add(id);
                    i = scratch.Count - 1;
                }

                cache = scratch[i].Paged;
            }

            int count = Next(plan, ref at);
            if (tokens.Length < count)
            {
                tokens = new int[count];
            }

            for (int t = 0; t < count; t++)
            {
                tokens[t] = Next(plan, ref at);
            }

            slices.Clear();
            int sliceCount = Next(plan, ref at);
            for (int s = 0; s < sliceCount; s++)
            {
                int start = Next(plan, ref at), n = Next(plan, ref at), startPos = Next(plan, ref at);
                bool wantLogits = Next(plan, ref at) != 0;
                int[] table = new int[Next(plan, ref at)];
                for (int b = 0; b < table.Length; b++)
                {
                    table[b] = Next(plan, ref at);
                }

                slices.Add(new SequenceSlice(start, n, startPos, table, wantLogits));
            }

            Run(tokens.AsSpan(0, count), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(slices), cache, Span<float>.Empty, everyToken, microBatches);
        }
    }

    /// <summary>
    /// Rank 0: runs <paramref name="iterations"/> all-reduces of <paramref name="floats"/> floats on every rank (after one
    /// untimed) and returns how long each took here, from the call to the sum: what one collective of a forward pass costs.
    /// </summary>
    public TimeSpan[] ProbeAllReduce(int floats, int iterations)
    {
        if (_group is not { Size: > 1, Rank: 0 } g)
        {
            throw new InvalidOperationException("only rank 0 of a tensor-parallel model probes its group");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(floats);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        int at = 0;
        Put(ref at, (int)PlanKind.Probe);
        Put(ref at, floats);
        Put(ref at, iterations);
        g.Broadcast(_plan.AsMemory(0, at));
        var times = new TimeSpan[iterations];
        RunProbe(floats, iterations, times);
        return times;
    }

    private void RunProbe(int floats, int iterations, TimeSpan[]? times)
    {
        var values = new float[floats];
        _group!.AllReduceSum(values);
        for (int i = 0; i < iterations; i++)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            _group.AllReduceSum(values);
            if (times is not null)
            {
                times[i] = System.Diagnostics.Stopwatch.GetElapsedTime(start);
            }
        }
    }

    /// <summary>The whole model's KV heads: what a KV transfer carries, whatever the ranks.</summary>
    public int FullKvHeads => _shard?.FullConfig.KvHeads ?? Config.KvHeads;

    /// <summary>
    /// Rank 0: writes the keys and values of positions 0..<paramref name="tokenCount"/>-1 of the sequence in
    /// <paramref name="blocks"/>, every rank's heads, into <paramref name="destination"/> in the whole model's transfer
    /// layout (<see cref="PagedKvCache.Export"/>'s order with all KV heads), so that a worker with any number of ranks can
    /// import it.
    /// </summary>
    public void ExportKv(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(cache);
        LeadKv(PlanKind.ExportKv, cache, blocks, tokenCount);
        ExportShard(cache, blocks, tokenCount, destination);
    }

    /// <summary>
    /// Where each rank pushes its part of a KV transfer (<see cref="PushKv"/>), every rank's own; null on a rank that
    /// cannot push (its part then fails, and with it the transfer).
    /// </summary>
    public IKvTransferSender? KvSender { get; set; }

    /// <summary>
    /// How long a rank's push of its part may take before it counts as failed (<see cref="PushKv"/>). Keep it below the
    /// group's rank timeout: the other ranks wait for this one's result inside a collective, and a rank silent past that
    /// timeout is lost (the whole worker with it), whereas a failed push only ends its request.
    /// </summary>
    public TimeSpan KvPushTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Rank 0: every rank pushes the keys and values of positions 0..<paramref name="tokenCount"/>-1 of the sequence in
    /// <paramref name="blocks"/>, its own heads (a part of the whole model's layout, <see cref="KvTransferLayout.Parts"/>),
    /// to <paramref name="target"/> over its own connection, all at once; then each rank's result comes back to rank 0.
    /// Blocks the calling thread (the engine's) until every part is acknowledged or failed.
    /// </summary>
    public KvPushResult PushKv(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, KvPushTarget target)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(target);
        LeadKv(PlanKind.PushKv, cache, blocks, tokenCount, target);
        return PushShard(cache, blocks, tokenCount, target)!;
    }

    /// <summary>Rank 0: stores keys and values of every head (the whole model's transfer layout) into each rank's cache.</summary>
    public void ImportKv(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, ReadOnlyMemory<byte> source)
    {
        ArgumentNullException.ThrowIfNull(cache);
        LeadKv(PlanKind.ImportKv, cache, blocks, tokenCount);
        _group!.Broadcast(source);
        ImportShard(cache, blocks, tokenCount, source.Span);
    }

    private void LeadKv(PlanKind kind, PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, KvPushTarget? target = null)
    {
        if (_group is not { Size: > 1, Rank: 0 })
        {
            throw new InvalidOperationException("only rank 0 of a tensor-parallel model moves KV for every rank");
        }

        if (_pipeline is not null)
        {
            throw new NotSupportedException("KV transfer (disaggregated serving) with pipeline parallelism is not supported yet");
        }

        ObjectDisposedException.ThrowIf(_stopped, this);
        cache.CheckBlocks(blocks, tokenCount, nameof(blocks));
        int needed = (tokenCount + cache.BlockSize - 1) / cache.BlockSize;
        int at = 0;
        Put(ref at, (int)kind);
        Put(ref at, cache.BlockCount);
        Put(ref at, cache.BlockSize);
        Put(ref at, (int)cache.Dtype);
        Put(ref at, tokenCount);
        Put(ref at, needed);
        for (int b = 0; b < needed; b++)
        {
            Put(ref at, blocks[b]);
        }

        if (target is not null)
        {
            PutText(ref at, target.Address);
            PutText(ref at, target.TransferId);
        }

        _group.Broadcast(_plan.AsMemory(0, at));
    }

    /// <summary>
    /// This rank's heads of the blocks as one part of the whole, pushed to the target; then every rank's result is
    /// gathered on rank 0, which returns them all (null on the other ranks). A failed push is a result, not an exception:
    /// every rank reaches the gather whatever happened to its push.
    /// </summary>
    private KvPushResult? PushShard(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, KvPushTarget target)
    {
        ICollectiveGroup g = _group!;
        KvTransferLayout layout = cache.Layout(tokenCount) with { KvHeadStart = g.Rank * Config.KvHeads, ModelKvHeads = FullKvHeads, Parts = g.Size };
        byte[] data = new byte[layout.ByteCount];
        cache.Export(blocks, tokenCount, data);
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        string? failure = null;
        if (KvSender is not { } sender)
        {
            failure = "this rank has no KV sender";
        }
        else
        {
            using var bound = new CancellationTokenSource(KvPushTimeout);
            try
            {
                // The engine's thread is synchronous by design (its collectives are): it waits here for its own part's
                // acknowledgement while the other ranks push theirs.
                sender.PushAsync(target.Address, target.TransferId, new KvTransferPayload(layout, data), bound.Token).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (bound.IsCancellationRequested)
            {
                failure = $"its part was not acknowledged within {KvPushTimeout.TotalSeconds:0.#} s";
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failure = e.Message;
            }
        }

        TimeSpan elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(start);
        float[] status = EncodePushStatus(failure is null ? data.Length : -1, elapsed, failure);
        bool root = g.Rank == 0;
        float[] all = root ? new float[PushStatusFloats * g.Size] : [];
        g.Gather(status, all);
        if (!root)
        {
            return null;
        }

        var bytes = new long[g.Size];
        TimeSpan slowest = TimeSpan.Zero;
        var failures = new List<string>();
        for (int r = 0; r < g.Size; r++)
        {
            (long b, TimeSpan t, string? why) = DecodePushStatus(all.AsSpan(r * PushStatusFloats, PushStatusFloats));
            bytes[r] = Math.Max(b, 0);
            slowest = t > slowest ? t : slowest;
            if (why is not null)
            {
                failures.Add($"rank {r}: {why}");
            }
        }

        return new KvPushResult(bytes, slowest, failures.Count == 0 ? null : string.Join("; ", failures));
    }

    /// <summary>A rank's push result as floats that survive any gather exactly: integers below 2^16 each.</summary>
    private static float[] EncodePushStatus(long bytes, TimeSpan elapsed, string? failure)
    {
        var status = new float[PushStatusFloats];
        long micros = (long)elapsed.TotalMicroseconds;
        status[0] = bytes >= 0 ? 1 : 0;
        for (int i = 0; i < 3; i++)
        {
            status[1 + i] = (Math.Max(bytes, 0) >> (16 * i)) & 0xFFFF;
            status[4 + i] = (micros >> (16 * i)) & 0xFFFF;
        }

        byte[] message = System.Text.Encoding.UTF8.GetBytes(failure ?? "");
        int length = Math.Min(message.Length, MaxPushMessageBytes);
        status[7] = length;
        for (int i = 0; i < length; i++)
        {
            status[8 + i] = message[i];
        }

        return status;
    }

    private static (long Bytes, TimeSpan Elapsed, string? Failure) DecodePushStatus(ReadOnlySpan<float> status)
    {
        long bytes = 0, micros = 0;
        for (int i = 0; i < 3; i++)
        {
            bytes |= (long)status[1 + i] << (16 * i);
            micros |= (long)status[4 + i] << (16 * i);
        }

        if (status[0] == 1)
        {
            return (bytes, TimeSpan.FromMicroseconds(micros), null);
        }

        byte[] message = new byte[(int)status[7]];
        for (int i = 0; i < message.Length; i++)
        {
            message[i] = (byte)status[8 + i];
        }

        return (-1, TimeSpan.FromMicroseconds(micros), System.Text.Encoding.UTF8.GetString(message));
    }

    /// <summary>
    /// This rank's heads of the blocks, gathered on rank 0 into the whole layout (rank 0 passes the destination), in the
    /// cache's dtype: the elements travel as their bytes (a row of a rank's heads is a whole number of floats: head
    /// sizes are even).
    /// </summary>
    private void ExportShard(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, Span<byte> destination)
    {
        int element = cache.Dtype.ElementBytes();
        int localBytes = cache.KvDim * element, fullBytes = localBytes * _group!.Size, rows = 2 * cache.Layers * tokenCount;
        var mine = new float[(rows * localBytes + sizeof(float) - 1) / sizeof(float)];
        Span<byte> mineBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(mine.AsSpan());
        cache.Export(blocks, tokenCount, mineBytes);
        bool root = _group.Rank == 0;
        float[] gathered = root ? new float[mine.Length * _group.Size] : [];
        _group.Gather(mine, gathered);
        if (!root)
        {
            return;
        }

        // [rank][layer, k/v, token][local heads] -> [layer, k/v, token][rank's heads ...]
        ReadOnlySpan<byte> all = System.Runtime.InteropServices.MemoryMarshal.AsBytes(gathered.AsSpan());
        Span<byte> full = destination[..(rows * fullBytes)];
        for (int r = 0; r < _group.Size; r++)
        {
            ReadOnlySpan<byte> part = all.Slice(r * mineBytes.Length, rows * localBytes);
            for (int row = 0; row < rows; row++)
            {
                part.Slice(row * localBytes, localBytes).CopyTo(full.Slice(row * fullBytes + r * localBytes, localBytes));
            }
        }
    }

    /// <summary>Takes this rank's heads out of the whole layout (in the cache's dtype: rank 0 converted it) and stores them.</summary>
    private void ImportShard(PagedKvCache cache, ReadOnlySpan<int> blocks, int tokenCount, ReadOnlySpan<byte> source)
    {
        int element = cache.Dtype.ElementBytes();
        int localBytes = cache.KvDim * element, fullBytes = localBytes * _group!.Size, rows = 2 * cache.Layers * tokenCount;
        if (source.Length != rows * fullBytes)
        {
            throw new CollectiveException($"rank {_group.Rank}: a KV import of {tokenCount} tokens needs {rows * fullBytes} bytes, rank 0 sent {source.Length}", 0);
        }

        var mine = new byte[rows * localBytes];
        for (int row = 0; row < rows; row++)
        {
            source.Slice(row * fullBytes + _group.Rank * localBytes, localBytes).CopyTo(mine.AsSpan(row * localBytes, localBytes));
        }

        cache.Import(blocks, cache.Layout(tokenCount), mine);
    }

    /// <summary>A plan's KV cache element type (rank 0's cache's: a follower's cache stores what rank 0's does).</summary>
    private KvCacheDtype NextDtype(ReadOnlySpan<byte> plan, ref int at)
    {
        int value = Next(plan, ref at);
        return Enum.IsDefined((KvCacheDtype)value) ? (KvCacheDtype)value
            : throw new CollectiveException($"rank {_group!.Rank}: rank 0 sent a plan with KV cache element type {value}", 0);
    }

    private static (ICollectiveGroup? Group, ShardedWeights? Shard, int VocabStart, int VocabCount) Partition(IModelWeights weights, ICollectiveGroup? group)
    {
        if (weights is ShardedWeights shard)
        {
            if (group is null || group.Size != shard.Size || group.Rank != shard.Rank)
            {
                throw new ArgumentException($"weights sharded for rank {shard.Rank} of {shard.Size} need that rank's collective group; got {(group is null ? "none" : $"rank {group.Rank} of {group.Size}")}", nameof(group));
            }

            return shard.Size == 1 ? (null, null, 0, weights.Config.VocabSize) : (group, shard, shard.VocabStart, shard.VocabCount);
        }

        if (weights is PipelineStageWeights stage)
        {
            return (stage.Stages == 1 ? null : group, null, 0, weights.Config.VocabSize);
        }

        if (group is { Size: > 1 })
        {
            throw new ArgumentException($"a group of {group.Size} ranks needs each rank's part of the model (ShardedWeights or PipelineStageWeights), not the whole model", nameof(group));
        }

        return (null, null, 0, weights.Config.VocabSize);
    }

    /// <summary>Rank 0 of a group: broadcasts the plan of the pass it is about to run (nothing otherwise).</summary>
    private void Lead(ReadOnlySpan<int> tokens, ReadOnlySpan<SequenceSlice> sequences, PagedKvCache cache, long scratchId, bool everyToken)
    {
        if (_group is not { Size: > 1 } g)
        {
            return;
        }

        if (g.Rank != 0)
        {
            throw new InvalidOperationException($"rank {g.Rank} follows rank 0's plans (Follow); only rank 0 runs Forward");
        }

        ObjectDisposedException.ThrowIf(_stopped, this);
        int at = 0;
        Put(ref at, (int)(scratchId == 0 ? PlanKind.Pool : PlanKind.Scratch));
        Put(ref at, _maxBatch);
        Put(ref at, everyToken ? 1 : 0);
        Put(ref at, PassMicroBatches);
        Put(ref at, (int)cache.Dtype);
        if (scratchId == 0)
        {
            Put(ref at, cache.BlockCount);
            Put(ref at, cache.BlockSize);
        }
        else
        {
            Put(ref at, (int)scratchId);
            Put(ref at, (int)(scratchId >> 32));
            Put(ref at, cache.BlockSize);
        }

        Put(ref at, tokens.Length);
        foreach (int t in tokens)
        {
            Put(ref at, t);
        }

        Put(ref at, sequences.Length);
        int bs = cache.BlockSize;
        foreach (SequenceSlice s in sequences)
        {
            int blocks = (int)(((long)s.StartPos + s.TokenCount + bs - 1) / bs);
            Put(ref at, s.TokenStart);
            Put(ref at, s.TokenCount);
            Put(ref at, s.StartPos);
            Put(ref at, s.WantLogits ? 1 : 0);
            Put(ref at, blocks);
            for (int b = 0; b < blocks; b++)
            {
                Put(ref at, s.BlockTable[b]);
            }
        }

        g.Broadcast(_plan.AsMemory(0, at));
    }

    /// <summary>Rank 0 at dispose: the followers return from <see cref="Follow"/>.</summary>
    private void StopFollowers()
    {
        if (_group is { Size: > 1, Rank: 0 } g && !_stopped)
        {
            _stopped = true;
            try
            {
                g.Broadcast(new[] { (byte)PlanKind.Stop, (byte)0, (byte)0, (byte)0 });
            }
            catch (CollectiveException)
            {
                // A follower already gone has nothing to stop.
            }
            catch (ObjectDisposedException)
            {
                // The group was closed first: the followers see it closed.
            }
        }
    }

    /// <summary>Sums a partial result over the ranks, in place (nothing without a group).</summary>
    private void AllReduce(Span<float> values, ForwardProfile? profile)
    {
        if (_shard is null)
        {
            return;
        }

        _group!.AllReduceSum(values);
        profile?.Mark(ForwardProfile.Communication);
    }

    /// <summary>
    /// This rank's vocabulary columns of the logits of <paramref name="rows"/> normed rows, gathered on rank 0 into
    /// <paramref name="logits"/> (rows x VocabSize; empty on the other ranks).
    /// </summary>
    private void GatherLogits(ReadOnlySpan<float> normed, int rows, Span<float> logits, ForwardProfile? profile)
    {
        int vc = _vocabCount, vocab = Config.VocabSize, size = _group!.Size;
        Span<float> local = _logitShard.AsSpan(0, rows * vc);
        MatMul.Multiply(_output!, normed, local, rows);
        profile?.Mark(ForwardProfile.Logits);
        bool root = _group.Rank == 0;
        Span<float> gathered = root ? _gathered.AsSpan(0, size * rows * vc) : Span<float>.Empty;
        _group.Gather(local, gathered);
        if (root)
        {
            for (int r = 0; r < size; r++)
            {
                for (int i = 0; i < rows; i++)
                {
                    gathered.Slice((r * rows + i) * vc, vc).CopyTo(logits.Slice(i * vocab + r * vc, vc));
                }
            }
        }

        profile?.Mark(ForwardProfile.Communication);
    }

    private void Put(ref int at, int value)
    {
        if (at + 4 > _plan.Length)
        {
            Array.Resize(ref _plan, _plan.Length * 2);
        }

        BinaryPrimitives.WriteInt32LittleEndian(_plan.AsSpan(at), value);
        at += 4;
    }

    /// <summary>A string in the plan: its UTF-8 length, then its bytes padded to 4.</summary>
    private void PutText(ref int at, string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        Put(ref at, bytes.Length);
        int padded = (bytes.Length + 3) & ~3;
        if (at + padded > _plan.Length)
        {
            Array.Resize(ref _plan, Math.Max(_plan.Length * 2, at + padded));
        }

        bytes.CopyTo(_plan.AsSpan(at));
        at += padded;
    }

    private static string NextText(ReadOnlySpan<byte> plan, ref int at)
    {
        int length = Next(plan, ref at);
        if (length < 0 || plan.Length < at + length)
        {
            throw new CollectiveException($"a plan of {plan.Length} bytes ends inside a text of {length} bytes at byte {at}", 0);
        }

        string text = System.Text.Encoding.UTF8.GetString(plan.Slice(at, length));
        at += (length + 3) & ~3;
        return text;
    }

    private static int ReadInt(ReadOnlySpan<byte> plan, int at) =>
        plan.Length >= at + 4 ? BinaryPrimitives.ReadInt32LittleEndian(plan[at..]) : throw new CollectiveException($"a plan of {plan.Length} bytes ends before byte {at + 4}", 0);

    private static int Next(ReadOnlySpan<byte> plan, ref int at)
    {
        int value = ReadInt(plan, at);
        at += 4;
        return value;
    }
}
