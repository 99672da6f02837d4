namespace Dynamo.Tests.Frontend;

/// <summary>Every <see cref="ResponseGoldenTests"/> case again through a Processor component: the same bytes.</summary>
public sealed class ResponseGoldenThroughProcessorTests : ResponseGoldenTests
{
    private protected override bool ThroughProcessor => true;
}
