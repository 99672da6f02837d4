using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>Where a disaggregated simulation's prefills ran: the router's decisions, and what the decode workers saw.</summary>
internal sealed record SimulationDisaggregation
{
    /// <summary>Every (remote, reason) the disaggregation rule gave, with its count (<see cref="Llm.Disaggregation.PrefillReasons"/>).</summary>
    public IReadOnlyList<(bool Remote, string Reason, long Count)> Decisions { get; init; } = [];

    /// <summary>Requests the router sent for a remote prefill.</summary>
    public long RemoteDecisions { get; init; }

    /// <summary>Requests the router left to their decode worker's own prefill.</summary>
    public long LocalDecisions { get; init; }

    /// <summary>Requests whose decode worker did import the KV of a prefill worker.</summary>
    public long RemotePrefills { get; init; }

    /// <summary>Requests sent for a remote prefill that their decode worker prefilled itself, by reason (no blocks to reserve, the prefill failed).</summary>
    public IReadOnlyList<(string Reason, long Count)> Fallbacks { get; init; } = [];

    /// <summary>Virtual milliseconds each imported KV took over the link.</summary>
    public LatencySummary TransferMs { get; init; }

    /// <summary>Bytes of KV the links carried.</summary>
    public long TransferBytes { get; init; }

    /// <summary>Prefills each prefill worker computed.</summary>
    public Spread PrefillRequestsPerWorker { get; init; }
}
