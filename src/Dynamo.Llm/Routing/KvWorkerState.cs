namespace Dynamo.Llm.Routing;

/// <summary>
/// One worker as a <see cref="KvRouter"/> counts it: its slot (its bit in the prefix tables), the load the
/// router charged it, its own latest load report, and the scratch overlaps of the decision being made.
/// Mutated only under the router's gate.
/// </summary>
internal sealed class KvWorkerState(RoutingTarget target, int slot, int batchBudget)
{
    public RoutingTarget Target { get; } = target;

    public long WorkerId => Target.WorkerId;

    /// <summary>Whether its worker has data-parallel ranks (a rank other than 0 was added): decisions then name the rank.</summary>
    public bool Ranked { get; set; }

    public int Slot { get; } = slot;

    public int BatchBudget { get; set; } = batchBudget;

    /// <summary>Uncached prompt tokens of its requests still before their first token.</summary>
    public long ActivePrefillTokens { get; set; }

    /// <summary>Distinct full blocks of its in-flight requests (the in-flight table's count for its slot).</summary>
    public long DistinctBlocks { get; set; }

    /// <summary>In-flight requests whose prompt ends in a partial block (one block each).</summary>
    public long PartialBlocks { get; set; }

    public int InFlight { get; set; }

    /// <summary>Its decisions not completed yet (released at once when it is removed).</summary>
    public DecisionList Decisions { get; } = new();

    public int ReportedBlocksUsed { get; set; }

    public int ReportedBlocksTotal { get; set; }

    /// <summary>Requests waiting for admission in its latest report.</summary>
    public int ReportedWaiting { get; set; }

    public long ReportedAt { get; set; }

    public bool HasReport { get; set; }

    /// <summary>Blocks the index lists for this worker (<see cref="KvIndex.BlockCountOf"/>), refreshed after each event or dump the router applies, so that a decision reads it without a lookup.</summary>
    public int IndexedBlocks { get; set; }

    public bool Removed { get; set; }

    /// <summary>Its routing accuracy over its latest completed requests (null until one reports its cached tokens).</summary>
    public RoutingAccuracy? Accuracy { get; set; }

    /// <summary>Resyncs its accuracy asked for.</summary>
    public long AccuracyResyncs { get; set; }

    /// <summary>Bumped whenever its index part is rebuilt (a dump loaded, a resync asked): decisions made before judge nothing after.</summary>
    public int IndexGeneration { get; set; }
    /// <summary>Prefixes of its completed requests the ledger counts as cached here, oldest first (Routing/README.md, "Remembered prefixes").</summary>
    public Queue<RememberedPrefix> Remembered { get; } = new();

    /// <summary>Distinct blocks of <see cref="Remembered"/> (the recent table's count for its slot).</summary>
    public long RememberedBlocks { get; set; }

    /// <summary>Its pool's eviction estimate, from its load reports and the new blocks the router sends it.</summary>
    public PoolRetention Retention { get; } = new();

    /// <summary>Decision scratch: leading blocks of the request in the KV index for this worker.</summary>
    public int IndexedOverlap { get; set; }

    /// <summary>Decision scratch: leading blocks of the request held by this worker's requests in flight.</summary>
    public int InflightOverlap { get; set; }

    /// <summary>Decision scratch: leading blocks held by requests completed on this worker within the recent-prefix window.</summary>
    public int RecentOverlap { get; set; }
}
