using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.RequestPlane;

[Collection(TimingCollection.Name)]
public sealed class NatsRequestPlaneTimingContractTests() : RequestPlaneTimingContractTests(new NatsRequestPlaneTwin());
