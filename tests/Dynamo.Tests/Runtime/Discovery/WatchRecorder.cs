using System.Diagnostics;
using Dynamo.Runtime.Discovery;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>Applies a watch's events to a map, as a consumer would, and records them.</summary>
internal sealed class WatchRecorder : IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly List<DiscoveryEvent> _events = [];
    private readonly Dictionary<string, string> _state = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _synced;
    private Exception? _error;

    public WatchRecorder(IDiscovery discovery, string prefix)
    {
        _loop = Task.Run(async () =>
        {
            try
            {
                await foreach (DiscoveryEvent e in discovery.WatchPrefixAsync(prefix, _stop.Token))
                {
                    lock (_gate)
                    {
                        _events.Add(e);
                        switch (e.Kind)
                        {
                            case DiscoveryEventKind.Put:
                                _state[e.Key] = Utf8.Text(e.Value);
                                break;
                            case DiscoveryEventKind.Delete:
                                _state.Remove(e.Key);
                                break;
                            default:
                                _synced++;
                                break;
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                _error = e;
            }
        });
    }

    public int SyncedCount
    {
        get
        {
            lock (_gate)
            {
                return _synced;
            }
        }
    }

    public IReadOnlyList<DiscoveryEvent> Events
    {
        get
        {
            lock (_gate)
            {
                return [.. _events];
            }
        }
    }

    public IReadOnlyCollection<string> Keys
    {
        get
        {
            lock (_gate)
            {
                return [.. _state.Keys];
            }
        }
    }

    public bool Has(string key)
    {
        lock (_gate)
        {
            return _state.ContainsKey(key);
        }
    }

    public string? Value(string key)
    {
        lock (_gate)
        {
            return _state.GetValueOrDefault(key);
        }
    }

    public async Task WaitAsync(Func<WatchRecorder, bool> condition, string what, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? TimeSpan.FromSeconds(5);
        var clock = Stopwatch.StartNew();
        while (!condition(this))
        {
            if (_error is not null)
            {
                Assert.Fail($"the watch failed while waiting for {what}: {_error}");
            }

            if (clock.Elapsed > limit)
            {
                Assert.Fail($"timed out after {limit.TotalSeconds} s waiting for {what}; events: {string.Join(", ", Events.Select(e => $"{e.Kind} {e.Key}"))}");
            }

            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.WaitAsync(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
