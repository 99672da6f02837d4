using Dynamo.Llm.Routing;

namespace Dynamo.Llm.Disaggregation;

/// <summary>The prefill workers of a model as a <see cref="DisaggregatedRouter"/> sees them for one request.</summary>
public interface IPrefillPool
{
    /// <summary>Their generate endpoint, <c>namespace.component.endpoint</c> (the decode worker calls it).</summary>
    string Endpoint { get; }

    /// <summary>The prefill workers that may take the request, ascending, filtered for availability; may be empty.</summary>
    IReadOnlyList<long> Candidates { get; }

    /// <summary>Chooses among them (KV-aware: longest cached prefix against load) and charges the chosen one.</summary>
    IWorkerRouter Router { get; }

    /// <summary>Requests waiting at the candidates now (their own latest load reports).</summary>
    int QueuedRequests();

    /// <summary>The disaggregation settings in force for the model.</summary>
    DisaggregationSettings Settings { get; }

    /// <summary>Whether the decode worker <paramref name="workerId"/> takes remote prefills (its model card's remote_prefill).</summary>
    bool AcceptsRemotePrefill(long workerId);
}
