namespace Dynamo.Llm.Routing;

/// <summary>A <see cref="KvRouter"/>'s counters since start (<see cref="RouterStats"/> is their snapshot). Not thread-safe: the router's gate guards them.</summary>
internal sealed class RouterCounters
{
    public long Decisions { get; set; }

    public long PromptTokens { get; set; }

    public long PredictedHitTokens { get; set; }

    public long ReportedDecisions { get; set; }

    public long ReportedPredictedHitTokens { get; set; }

    public long ReportedActualHitTokens { get; set; }

    public long Queued { get; set; }

    public long Rejections { get; set; }

    /// <summary>Workers' index resyncs asked because routing accuracy fell (<see cref="KvRouterOptions.ResyncAccuracy"/>).</summary>
    public long AccuracyResyncs { get; set; }

    /// <summary>Peer replicas' charges released without their <c>released</c> event: past their time to live, or not live at their replica's resync.</summary>
    public long PeerChargesDropped { get; set; }

    /// <summary>Decisions charged and not completed, over every worker.</summary>
    public int InFlight { get; set; }

    public void OnDecision(RoutingDecision decision)
    {
        Decisions++;
        PromptTokens += decision.PromptTokens;
        PredictedHitTokens += decision.PredictedCachedTokens;
    }

    /// <summary>A decision completed with the engine's cached-token count: routing accuracy.</summary>
    public void OnReported(int predicted, int actual)
    {
        ReportedDecisions++;
        ReportedPredictedHitTokens += predicted;
        ReportedActualHitTokens += actual;
    }
}
