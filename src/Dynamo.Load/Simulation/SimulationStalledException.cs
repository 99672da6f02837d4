namespace Dynamo.Load.Simulation;

/// <summary>
/// A simulated worker can make no more progress: nothing runs, nothing waits for KV, and the request at the head of its
/// queue cannot get blocks (held by requests queued behind it, with imported KV). The real engine's scheduler would stop
/// there too; the simulation ends instead of stepping an empty step forever.
/// </summary>
internal sealed class SimulationStalledException(string message) : Exception(message);
