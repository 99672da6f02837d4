using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>One router mode's figures from a simulation: latencies and throughput in virtual time, the router's decision time in real time.</summary>
internal sealed record SimulationModeResult
{
    public required string Mode { get; init; }

    /// <summary>Prefill workers beside the (decode) workers; 0: aggregated.</summary>
    public int PrefillWorkers { get; init; }

    /// <summary>Where the prefills ran (with prefill workers; null when aggregated).</summary>
    public SimulationDisaggregation? Disaggregation { get; init; }

    /// <summary>Requests sent (turns).</summary>
    public int Requests { get; init; }

    public int Completed { get; init; }

    /// <summary>Requests the router refused (queue full or timed out) or no worker could ever serve (prompt beyond the context or pool).</summary>
    public int Rejected { get; init; }

    /// <summary>Seconds, virtual.</summary>
    public LatencySummary Ttft { get; init; }

    /// <summary>Seconds between consecutive tokens of a request, virtual (every gap pooled, as bench serve).</summary>
    public LatencySummary Itl { get; init; }

    public LatencySummary EndToEnd { get; init; }

    /// <summary>Output tokens per virtual second, from the start to the last completion.</summary>
    public double OutputTokensPerSecond { get; init; }

    public double RequestsPerSecond { get; init; }

    /// <summary>Prompt tokens the workers found in their prefix caches, of those they looked up.</summary>
    public double HitRate { get; init; }

    public long Preemptions { get; init; }

    public Spread RequestsPerWorker { get; init; }

    public Spread PromptTokensPerWorker { get; init; }

    /// <summary>Workers that got no request.</summary>
    public int StarvedWorkers { get; init; }

    /// <summary>The router's own time per decision, microseconds of real time (wall clock around each routing call).</summary>
    public LatencySummary DecisionMicros { get; init; }

    /// <summary>
    /// As <see cref="DecisionMicros"/>, over the decisions not interrupted: no garbage collection ran (the simulation's
    /// heap of a thousand workers' pools and traces is the process's; a router's own is small) and the thread did not
    /// wait for a CPU (Linux's schedstat; other load on the machine).
    /// </summary>
    public LatencySummary DecisionMicrosUninterrupted { get; init; }

    /// <summary>Decisions interrupted by a garbage collection or a wait for a CPU.</summary>
    public int DecisionsInterrupted { get; init; }

    /// <summary>
    /// How far the router's predicted cached tokens were from the engines' actual ones: the sum of |predicted - actual|
    /// over the sum of the larger of the two, over completed requests (0: every prediction right; null: nothing predicted,
    /// a mode without a KV router, or nothing cached or predicted).
    /// </summary>
    public double? CachedTokenPredictionError { get; init; }

    /// <summary>Worker indexes the KV routers resynced because their accuracy on the worker fell (<see cref="Llm.Routing.KvRouterOptions.ResyncAccuracy"/>).</summary>
    public long AccuracyResyncs { get; init; }

    /// <summary>KV events the workers lost on purpose (<c>--kv-event-loss</c>).</summary>
    public long KvEventsLost { get; init; }

    /// <summary>Follow-up turns (a prompt extending an earlier one beyond what every prompt shares) and where they went.</summary>
    public FollowUpSummary FollowUps { get; init; }

    /// <summary>KV events the workers published (all reach the KV router; the other modes ignore them).</summary>
    public long KvEvents { get; init; }

    public TimeSpan VirtualTime { get; init; }

    /// <summary>Real time the simulation of this mode took.</summary>
    public TimeSpan WallTime { get; init; }

    /// <summary>Events the virtual clock ran.</summary>
    public long Events { get; init; }

    /// <summary>KV events per second of virtual time.</summary>
    public double KvEventsPerVirtualSecond => VirtualTime > TimeSpan.Zero ? KvEvents / VirtualTime.TotalSeconds : 0;

    /// <summary>KV events the router took per second of real time.</summary>
    public double KvEventsPerWallSecond => WallTime > TimeSpan.Zero ? KvEvents / WallTime.TotalSeconds : 0;
}
