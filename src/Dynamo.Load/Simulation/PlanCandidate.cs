namespace Dynamo.Load.Simulation;

/// <summary>
/// One deployment the planner simulated: its shape (<c>agg</c> or <c>disagg P:D</c>), router mode, workers and figures,
/// and why it misses the targets (<see cref="Miss"/> null when it meets them). A deployment whose simulation stalled
/// (<see cref="SimulationStalledException"/>) has no figures: <see cref="Result"/> is null and the stall is its miss.
/// </summary>
internal sealed record PlanCandidate(string Shape, string Mode, int PrefillWorkers, int DecodeWorkers, SimulationModeResult? Result, string? Miss)
{
    /// <summary>Prefill and decode (or aggregated) workers together.</summary>
    public int Workers => PrefillWorkers + DecodeWorkers;

    public bool Meets => Miss is null;
}
