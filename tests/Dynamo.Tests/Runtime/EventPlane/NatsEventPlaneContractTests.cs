namespace Dynamo.Tests.Runtime.EventPlane;

public sealed class NatsEventPlaneContractTests() : EventPlaneContractTests(new NatsEventPlaneTwin());
