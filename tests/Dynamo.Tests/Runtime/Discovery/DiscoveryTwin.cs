using Dynamo.Runtime.Discovery;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>One discovery backend as the contract tests see it: processes (discovery objects) on one store.</summary>
public abstract class DiscoveryTwin : TestTwin
{
    /// <summary>"etcd" or "memory".</summary>
    public abstract string ExpectedName { get; }

    /// <summary>The address the backend reports.</summary>
    public abstract string ExpectedAddress { get; }

    /// <summary>A discovery object on the shared store, not started; disposed with the twin.</summary>
    public IDiscovery Create() => Own(Make());

    /// <summary>A started discovery object (a process with its own lease); disposed with the twin.</summary>
    public async Task<IDiscovery> StartAsync()
    {
        IDiscovery discovery = Create();
        await discovery.StartAsync();
        return discovery;
    }

    protected abstract IDiscovery Make();
}
