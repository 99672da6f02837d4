namespace Dynamo.Tests.Runtime.EventPlane;

public sealed class InProcessEventPlaneContractTests() : EventPlaneContractTests(new InProcessEventPlaneTwin());
