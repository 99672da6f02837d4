namespace Dynamo.Load.Workloads;

/// <summary>
/// One line of a Mooncake trace: arrival time in milliseconds, prompt and output lengths in tokens, and
/// one hash id per 512-token block of the prompt (equal leading ids = a shared prefix).
/// </summary>
internal sealed record TraceRecord(long TimestampMs, int InputLength, int OutputLength, long[] HashIds);
