using Dynamo.Llm.Routing;

namespace Dynamo.Components.Registry;

/// <summary>
/// Where a request for a model goes next: the endpoint's workers, the candidates among them (ascending, never
/// empty) and the router that chooses (the endpoint's own, or a disaggregated one over it and the model's
/// prefill workers).
/// </summary>
internal sealed record RouteTarget(EndpointWorkers Workers, IReadOnlyList<long> Candidates, IWorkerRouter Router);
