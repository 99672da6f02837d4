namespace Dynamo.Load.Benchmarks;

/// <summary>
/// One fault of <see cref="FaultBenchmark"/>: its requests (in flight when it began, or started before the next
/// fault), how they ended, the streams the frontend moved to another worker meanwhile, and the seconds from the
/// fault to the first token of a request sent after it.
/// </summary>
internal sealed record FaultRow(
    string Fault, string Description, int Requests, int Completed, int Migrated, int Failed, int Refused, double? RecoverySeconds, IReadOnlyList<string> Errors);
