namespace Dynamo.Tests.Frontend.Observability;

/// <summary>Every <see cref="WorkerLoadMetricsTests"/> test again with a Processor component in the path: it routes, and its /metrics has the per-worker series.</summary>
public sealed class WorkerLoadMetricsThroughProcessorTests : WorkerLoadMetricsTests
{
    private protected override bool ThroughProcessor => true;
}
