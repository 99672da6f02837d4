using Dynamo.Llm.Routing;
using Dynamo.Runtime;

namespace Dynamo.Components.Registry;

/// <summary>
/// The workers of one endpoint, as the registry serves them: the endpoint's client (instances from
/// discovery, failures reported) and its router (the <c>--router-mode</c> policy, one per endpoint).
/// </summary>
internal sealed class EndpointWorkers(EndpointClient client, IWorkerRouter router) : IAsyncDisposable
{
    public EndpointAddress Address => Client.Address;

    public EndpointClient Client { get; } = client;

    public IWorkerRouter Router { get; } = router;

    /// <summary>
    /// The candidates for a request among <paramref name="instances"/> (ids on this endpoint): those not in
    /// <paramref name="tried"/>, and of those the ones the client sees as available (every one left when none
    /// is: a report of failure may be stale). Never a draining instance. Ascending; empty when every instance was
    /// tried or drains.
    /// </summary>
    public long[] Candidates(IEnumerable<long> instances, IReadOnlySet<long> tried)
    {
        long[] left = [.. instances.Where(id => !tried.Contains(id) && !Client.IsDraining(id)).Order()];
        if (left.Length == 0)
        {
            return left;
        }

        var available = new HashSet<long>(Client.AvailableInstances.Select(r => r.InstanceId));
        long[] up = [.. left.Where(available.Contains)];
        return up.Length > 0 ? up : left;
    }

    public async ValueTask DisposeAsync()
    {
        await Router.DisposeAsync().ConfigureAwait(false);
        await Client.DisposeAsync().ConfigureAwait(false);
    }
}
