using System.Collections.Concurrent;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Mocker;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// The harness's echo engine, recording the first prompt token of every request it is given (in order) and able
/// to hold its loop before a step until released: requests then stay in flight as long as a test needs them to.
/// Disposing releases it first.
/// </summary>
internal sealed class HeldEchoEngine : IEngine
{
    private readonly EchoEngine _inner = FrontendHarness.Echo();
    private readonly ManualResetEventSlim _open = new(initialState: true);
    private long _holdFrom = long.MaxValue;
    private int _cancelled;

    public HeldEchoEngine()
    {
        _inner.Core.BeforeStep = step =>
        {
            if (step >= Volatile.Read(ref _holdFrom))
            {
                _open.Wait();
            }
        };
    }

    /// <summary>The first prompt token of each submitted request, in submission order.</summary>
    public ConcurrentQueue<int> Submitted { get; } = new();

    public string Name => _inner.Name;

    public int BlockSize => _inner.BlockSize;

    public int ContextLength => _inner.ContextLength;

    public EngineStats Stats => _inner.Stats;

    public KvEventLog? KvEvents => _inner.KvEvents;

    /// <summary>Cancellations that reached the engine (a request's token cancelled, or <see cref="Cancel"/>), even while held.</summary>
    public int CancelledRequests => Volatile.Read(ref _cancelled);

    /// <summary>Holds the loop before its next step once <paramref name="steps"/> more steps ran.</summary>
    public void Hold(int steps = 0)
    {
        _open.Reset();
        Volatile.Write(ref _holdFrom, _inner.Stats.Steps + steps);
    }

    /// <summary>Lets the loop run on.</summary>
    public void Release()
    {
        Volatile.Write(ref _holdFrom, long.MaxValue);
        _open.Set();
    }

    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default)
    {
        Submitted.Enqueue(request.PromptTokens[0]);
        cancellationToken.Register(() => Interlocked.Increment(ref _cancelled));
        return _inner.SubmitAsync(request, cancellationToken);
    }

    public bool Cancel(string requestId)
    {
        Interlocked.Increment(ref _cancelled);
        return _inner.Cancel(requestId);
    }

    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) => _inner.DumpKvAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        Release();
        await _inner.DisposeAsync();
        _open.Dispose();
    }
}
