using Dynamo.Components.Routing;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Routing;

namespace Dynamo.Components.Registry;

/// <summary>A model's prefill workers for one request: their endpoint's workers (always KV-routed), the candidates, the settings in force.</summary>
/// <param name="Workers">The prefill endpoint's client and router.</param>
/// <param name="Candidates">The prefill instances that may take the request (available ones first filtered).</param>
/// <param name="Settings">The model's disaggregation settings now.</param>
/// <param name="DecodeTakesRemotePrefill">Whether a decode instance takes remote prefills (its card).</param>
internal sealed record PrefillPool(EndpointWorkers Workers, IReadOnlyList<long> Candidates, DisaggregationSettings Settings, Func<long, bool> DecodeTakesRemotePrefill) : IPrefillPool
{
    public string Endpoint => Workers.Address.ToString();

    public IWorkerRouter Router => Workers.Router;

    public int QueuedRequests() => (Workers.Router as KvWorkerRouter)?.ReportedWaiting(Candidates) ?? 0;

    public bool AcceptsRemotePrefill(long workerId) => DecodeTakesRemotePrefill(workerId);
}
