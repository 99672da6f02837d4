namespace Dynamo.Tests.Runtime;

/// <summary>
/// One member of a twin pair (in-process or real) as contract tests see it: started before each test, and
/// everything it made (servers, planes, discovery objects) disposed after, last made first.
/// </summary>
public abstract class TestTwin : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> _owned = [];

    /// <summary>Starts what the twin needs (a NATS server, say).</summary>
    public virtual Task InitializeAsync() => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        _owned.Clear();
    }

    /// <summary>Disposes <paramref name="resource"/> with the twin.</summary>
    protected T Own<T>(T resource)
        where T : IAsyncDisposable
    {
        _owned.Add(resource);
        return resource;
    }
}
