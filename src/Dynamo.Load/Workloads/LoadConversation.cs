namespace Dynamo.Load.Workloads;

/// <summary>
/// What one worker sends in order: an optional system prompt and one or more turns. Each turn's request
/// carries the system prompt, every earlier successful turn and the model's actual answer to it, then
/// the new user message. <see cref="Arrival"/> (trace replay) is the earliest time after the run's
/// start at which the first turn may be sent.
/// </summary>
internal sealed record LoadConversation(string? System, IReadOnlyList<LoadTurn> Turns, TimeSpan Arrival = default);
