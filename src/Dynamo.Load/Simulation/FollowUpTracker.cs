using Dynamo.Llm.Kv;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>
/// Counts, over a simulation, the follow-up turns routed to a worker that still caches their prefix. A follow-up is a
/// request whose prompt extends an earlier request's beyond the prefix every request shares (the Mooncake conversation
/// trace's block 0, a common system prompt): its deepest match, in router blocks at <see cref="Stride"/>-block
/// checkpoints, against the latest earlier request holding each checkpoint. What a worker caches is its own truth: its
/// KV events applied at once (whatever reaches the router, and when). The shared prefix is known only at the end
/// (the longest prefix common to every routed prompt), so each request's deepest match is kept and filtered then.
/// </summary>
internal sealed class FollowUpTracker(int blockSize)
{
    /// <summary>Prefixes are remembered every this many blocks (the deepest match is found to within it): memory, not precision, sets it.</summary>
    public const int Stride = 4;

    private readonly Dictionary<ulong, Turn> _byCheckpoint = [];
    private readonly Dictionary<long, KvCachedSet> _cached = [];
    private readonly List<Match> _matches = [];
    private ulong[]? _first;
    private int _sharedBlocks = int.MaxValue;

    /// <summary>A worker's KV event: its cache as the worker itself has it (its events come in order).</summary>
    public void Observe(long workerId, KvEvent kvEvent)
    {
        if (!_cached.TryGetValue(workerId, out KvCachedSet? cached))
        {
            _cached[workerId] = cached = new KvCachedSet();
        }

        cached.Apply(kvEvent);
    }

    /// <summary>A request of <paramref name="prompt"/> was sent to <paramref name="workerId"/> at <paramref name="now"/>; the turn handle takes its completion.</summary>
    public Turn Dispatched(ReadOnlySpan<int> prompt, long workerId, TimeSpan now)
    {
        ulong[] hashes = BlockHasher.SequenceHashes(prompt, blockSize);
        Shared(hashes);
        for (int depth = hashes.Length / Stride * Stride; depth >= Stride; depth -= Stride)
        {
            if (_byCheckpoint.TryGetValue(hashes[depth - 1], out Turn? previous))
            {
                _matches.Add(new Match(
                    depth,
                    Holds(workerId, hashes, depth),
                    Holds(previous.WorkerId, hashes, depth),
                    previous.Ended is { } ended ? Math.Max(0, (now - ended).TotalSeconds) : 0));
                break;
            }
        }

        var turn = new Turn(workerId);
        for (int depth = Stride; depth <= hashes.Length; depth += Stride)
        {
            _byCheckpoint[hashes[depth - 1]] = turn;
        }

        return turn;
    }

    /// <summary>The figures: follow-ups are the matches deeper than the prefix every prompt shares.</summary>
    public FollowUpSummary Summary()
    {
        int shared = _sharedBlocks == int.MaxValue ? 0 : _sharedBlocks;
        int count = 0, onHolder = 0, kept = 0;
        var gaps = new List<double>();
        foreach (Match m in _matches)
        {
            if (m.Depth <= shared)
            {
                continue;
            }

            count++;
            onHolder += m.OnWorker ? 1 : 0;
            kept += m.HolderKept ? 1 : 0;
            gaps.Add(m.GapSeconds);
        }

        return new FollowUpSummary(count, onHolder, kept, shared, LatencySummary.Of(gaps));
    }

    private bool Holds(long workerId, ulong[] hashes, int depth)
    {
        if (!_cached.TryGetValue(workerId, out KvCachedSet? cached))
        {
            return false;
        }

        for (int i = 0; i < depth; i++)
        {
            if (!cached.Contains(hashes[i]))
            {
                return false;
            }
        }

        return true;
    }

    private void Shared(ulong[] hashes)
    {
        if (_first is null)
        {
            _first = hashes;
            _sharedBlocks = hashes.Length;
            return;
        }

        int n = Math.Min(_sharedBlocks, hashes.Length);
        int common = 0;
        while (common < n && _first[common] == hashes[common])
        {
            common++;
        }

        _sharedBlocks = common;
    }

    /// <summary>A dispatched request: its worker, and when it ended (null while in flight or failed).</summary>
    public sealed class Turn(long workerId)
    {
        public long WorkerId { get; } = workerId;

        public TimeSpan? Ended { get; set; }
    }

    private readonly record struct Match(int Depth, bool OnWorker, bool HolderKept, double GapSeconds);
}
