namespace Dynamo.Tests.Frontend;

/// <summary>
/// Every <see cref="FrontendKvRoutingTests"/> test again with a Processor component in the path: the
/// processor runs the KV router (or asks the shared Router component), as in the guides' agg_router graph.
/// </summary>
public sealed class FrontendKvRoutingThroughProcessorTests : FrontendKvRoutingTests
{
    private protected override bool ThroughProcessor => true;
}
