using System.Collections.Immutable;
using Dynamo.Runtime;

namespace Dynamo.Components.Registry;

/// <summary>An immutable snapshot of one served model: its name, state and the instances whose cards name it (never empty).</summary>
internal sealed record ServedModel(string Name, ModelState State, ImmutableArray<ModelInstance> Instances)
{
    /// <summary>The endpoints its instances serve on.</summary>
    public IEnumerable<EndpointAddress> Endpoints => Instances.Select(i => i.Endpoint).Distinct();
}
