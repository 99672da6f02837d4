namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// Tests that bound wall-clock time (a call fails within a deadline, a heartbeat keeps a stream alive,
/// a lease expires within its TTL) run in this collection: alone, after the parallel tests, so that the
/// rest of the suite does not load the machine under them. Mark a class with
/// <c>[Collection(TimingCollection.Name)]</c>; a test that waits for a condition needs no such care.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Timing (not parallel)";
}
