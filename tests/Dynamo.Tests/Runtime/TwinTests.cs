namespace Dynamo.Tests.Runtime;

/// <summary>A contract test class: its tests run against the twin a subclass passes in.</summary>
public abstract class TwinTests<TTwin>(TTwin twin) : IAsyncLifetime
    where TTwin : TestTwin
{
    protected TTwin Twin { get; } = twin;

    public Task InitializeAsync() => Twin.InitializeAsync();

    public async Task DisposeAsync() => await Twin.DisposeAsync();
}
