namespace Dynamo.Components.Registry;

/// <summary>Where a request for a model goes next: the endpoint's workers and the candidates among them (ascending, never empty).</summary>
internal sealed record RouteTarget(EndpointWorkers Workers, IReadOnlyList<long> Candidates);
