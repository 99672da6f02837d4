namespace Dynamo.Llm.Routing;

/// <summary>
/// A snapshot of a <see cref="KvRouter"/>'s counters (monotonic since start) and gauges, for metrics.
/// Routing accuracy is <see cref="ReportedActualHitTokens"/> against <see cref="ReportedPredictedHitTokens"/>.
/// </summary>
public sealed record RouterStats
{
    /// <summary>Requests routed.</summary>
    public long Decisions { get; init; }

    /// <summary>Prompt tokens of routed requests.</summary>
    public long PromptTokens { get; init; }

    /// <summary>Tokens the router expected the chosen workers to have cached, over every decision.</summary>
    public long PredictedHitTokens { get; init; }

    /// <summary>Decisions completed with the engine's cached-token count.</summary>
    public long ReportedDecisions { get; init; }

    /// <summary>Predicted hit tokens of the decisions in <see cref="ReportedDecisions"/>.</summary>
    public long ReportedPredictedHitTokens { get; init; }

    /// <summary>Cached tokens the engines reported for the decisions in <see cref="ReportedDecisions"/>.</summary>
    public long ReportedActualHitTokens { get; init; }

    /// <summary>Requests waiting now because every worker is saturated.</summary>
    public int QueueDepth { get; init; }

    /// <summary>Requests that had to wait in the queue.</summary>
    public long Queued { get; init; }

    /// <summary>Requests rejected (queue full, or no worker).</summary>
    public long Rejections { get; init; }

    /// <summary>Requests in flight (routed, not completed).</summary>
    public int InFlight { get; init; }

    /// <summary>Index resyncs asked because a worker's routing accuracy fell below <see cref="KvRouterOptions.ResyncAccuracy"/>.</summary>
    public long AccuracyResyncs { get; init; }

    /// <summary>Decisions of other router replicas charged here and not released yet (included in <see cref="InFlight"/> and the workers' load).</summary>
    public int PeerCharges { get; init; }

    /// <summary>Peer charges released without their <c>released</c> event: past <see cref="KvRouterOptions.PeerChargeTtl"/>, or no longer live when this router resynced its charges of their replica.</summary>
    public long PeerChargesDropped { get; init; }

    /// <summary>KV events and load reports the event plane dropped before the router read them (it resyncs from the dumps); filled by the service that feeds the router, 0 otherwise.</summary>
    public long EventsDropped { get; init; }

    /// <summary>Event-plane messages that were not valid KV events or load reports; filled by the service that feeds the router.</summary>
    public long MalformedEvents { get; init; }

    /// <summary>Worker dumps loaded (joins and gaps); filled by the service that feeds the router.</summary>
    public long DumpsLoaded { get; init; }

    /// <summary>Each worker's load as the router sees it, by id.</summary>
    public IReadOnlyList<WorkerLoadSnapshot> Workers { get; init; } = [];
}
