namespace Dynamo.Tests.Runtime.RequestPlane;

public sealed class NatsRequestPlaneContractTests() : RequestPlaneContractTests(new NatsRequestPlaneTwin());
