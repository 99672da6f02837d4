using Dynamo.Llm.ModelCards;
using Dynamo.Runtime;

namespace Dynamo.Components.Registry;

/// <summary>One worker instance serving a model, as its model card says.</summary>
/// <param name="InstanceId">The worker's instance id (from the card's key).</param>
/// <param name="Card">Its model card.</param>
/// <param name="Endpoint">The card's endpoint.</param>
internal sealed record ModelInstance(long InstanceId, ModelDeploymentCard Card, EndpointAddress Endpoint);
