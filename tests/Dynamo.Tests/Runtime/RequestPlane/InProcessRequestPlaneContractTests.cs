namespace Dynamo.Tests.Runtime.RequestPlane;

public sealed class InProcessRequestPlaneContractTests() : RequestPlaneContractTests(new InProcessRequestPlaneTwin());
