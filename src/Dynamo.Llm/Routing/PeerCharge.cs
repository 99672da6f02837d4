namespace Dynamo.Llm.Routing;

/// <summary>
/// One decision of another router replica as this router holds it: its charge here (null when its worker was unknown
/// here: kept so that the replica's heartbeat count agrees, charging nothing) and when it was charged (its time to live).
/// </summary>
internal readonly record struct PeerCharge(RoutingDecision? Decision, long ChargedAt);
