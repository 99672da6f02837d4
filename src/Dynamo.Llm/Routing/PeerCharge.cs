namespace Dynamo.Llm.Routing;

/// <summary>
/// One decision of another router replica as this router holds it: its charge here (null when its worker was unknown
/// here: kept so that the replica's heartbeat count agrees, charging nothing), when it was charged (its time to live), and
/// whether its blocks counted as sent to the worker then (<see cref="Rated"/>: from its <c>charged</c> event, not a resync),
/// so that its outcome corrects the worker's eviction estimate.
/// </summary>
internal readonly record struct PeerCharge(RoutingDecision? Decision, long ChargedAt, bool Rated = false);
