using System.Diagnostics;
using System.Text;
using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>EtcdDiscovery against a real etcd; the tests that stop etcd start their own.</summary>
public class EtcdDiscoveryTests : IClassFixture<EtcdFixture>
{
    private static readonly TimeSpan ShortTtl = TimeSpan.FromSeconds(2);

    private readonly EtcdFixture _etcd;
    private readonly ITestOutputHelper _output;
    private readonly string _prefix = $"t/{Guid.NewGuid():N}/";

    public EtcdDiscoveryTests(EtcdFixture etcd, ITestOutputHelper output)
    {
        _etcd = etcd;
        _output = output;
    }

    [Fact]
    public async Task PutAsync_ThenGetAsync_ReturnsValueAndRevision()
    {
        await using EtcdDiscovery discovery = await StartAsync(_etcd.Server);

        await discovery.PutAsync(_prefix + "a", Bytes("one"), DiscoveryPutOptions.Persistent);
        DiscoveryEntry? entry = await discovery.GetAsync(_prefix + "a");

        Assert.NotNull(entry);
        Assert.Equal(_prefix + "a", entry.Key);
        Assert.Equal("one", Text(entry.Value));
        Assert.True(entry.Revision > 0);
        Assert.Equal("etcd", discovery.Name);
        Assert.Equal(_etcd.Server.Endpoint, discovery.Address);
        Assert.True(discovery.IsLeaseAlive);
        Assert.NotEqual(0, discovery.InstanceId);
    }

    [Fact]
    public async Task GetAsync_MissingKey_ReturnsNull()
    {
        await using EtcdDiscovery discovery = await StartAsync(_etcd.Server);

        Assert.Null(await discovery.GetAsync(_prefix + "missing"));
    }

    [Fact]
    public async Task GetPrefixAsync_KeysInsideAndOutside_ReturnsOnlyPrefixInKeyOrder()
    {
        await using EtcdDiscovery discovery = await StartAsync(_etcd.Server);
        await discovery.PutAsync(_prefix + "b", Bytes("2"), DiscoveryPutOptions.Persistent);
        await discovery.PutAsync(_prefix + "a", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await discovery.PutAsync(_prefix + "c/x", Bytes("3"), DiscoveryPutOptions.Persistent);
        await discovery.PutAsync(_prefix[..^1] + "0", Bytes("outside"), DiscoveryPutOptions.Persistent);

        IReadOnlyList<DiscoveryEntry> entries = await discovery.GetPrefixAsync(_prefix);

        Assert.Equal([_prefix + "a", _prefix + "b", _prefix + "c/x"], entries.Select(e => e.Key));
        Assert.Equal(["1", "2", "3"], entries.Select(e => Text(e.Value)));
    }

    [Fact]
    public async Task DeleteAsync_ExistingKey_RemovesIt()
    {
        await using EtcdDiscovery discovery = await StartAsync(_etcd.Server);
        await discovery.PutAsync(_prefix + "a", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await discovery.PutAsync(_prefix + "b", Bytes("2"), DiscoveryPutOptions.Persistent);

        await discovery.DeleteAsync(_prefix + "a");
        await discovery.DeleteAsync(_prefix + "b");
        await discovery.DeleteAsync(_prefix + "never-existed");

        Assert.Empty(await discovery.GetPrefixAsync(_prefix));
    }

    [Fact]
    public async Task CreateAsync_KeyAbsentThenPresent_CreatesOnceAndKeepsFirstValue()
    {
        await using EtcdDiscovery first = await StartAsync(_etcd.Server);
        await using EtcdDiscovery second = await StartAsync(_etcd.Server);

        Assert.True(await first.CreateAsync(_prefix + "owner", Bytes("first"), DiscoveryPutOptions.LeasedKey));
        Assert.False(await second.CreateAsync(_prefix + "owner", Bytes("second"), DiscoveryPutOptions.LeasedKey));
        Assert.False(await first.CreateAsync(_prefix + "owner", Bytes("again"), DiscoveryPutOptions.Persistent));

        Assert.Equal("first", Text((await second.GetAsync(_prefix + "owner"))!.Value));
    }

    [Fact]
    public async Task RevokeAsync_LeasedAndPersistentKeys_LeasedVanishAtOncePersistentStays()
    {
        await using EtcdDiscovery owner = await StartAsync(_etcd.Server);
        await using EtcdDiscovery observer = await StartAsync(_etcd.Server);
        await owner.PutAsync(_prefix + "leased", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await owner.CreateAsync(_prefix + "created", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await owner.PutAsync(_prefix + "blob", Bytes("2"), DiscoveryPutOptions.Persistent);

        await owner.RevokeAsync();
        await owner.RevokeAsync();

        Assert.Equal([_prefix + "blob"], (await observer.GetPrefixAsync(_prefix)).Select(e => e.Key));
        Assert.False(owner.IsLeaseAlive);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.PutAsync(_prefix + "late", Bytes("x"), DiscoveryPutOptions.LeasedKey));
    }

    [Fact]
    public async Task DisposeAsync_LeasedKey_VanishesAtOnce()
    {
        await using EtcdDiscovery observer = await StartAsync(_etcd.Server);
        EtcdDiscovery owner = await StartAsync(_etcd.Server);
        await owner.PutAsync(_prefix + "leased", Bytes("1"), DiscoveryPutOptions.LeasedKey);

        await owner.DisposeAsync();
        await owner.DisposeAsync();

        Assert.Null(await observer.GetAsync(_prefix + "leased"));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.GetAsync(_prefix + "leased"));
    }

    [Fact]
    public async Task WatchPrefixAsync_OtherProcessPutsThenDisposes_SeesListingSyncedPutDelete()
    {
        await using EtcdDiscovery watcher = await StartAsync(_etcd.Server);
        EtcdDiscovery worker = await StartAsync(_etcd.Server);
        await worker.PutAsync(_prefix + "existing", Bytes("0"), DiscoveryPutOptions.Persistent);
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.SyncedCount == 1, "the initial Synced");

        await worker.PutAsync(_prefix + "w1", Bytes("v1"), DiscoveryPutOptions.LeasedKey);
        await worker.PutAsync(_prefix + "w1", Bytes("v2"), DiscoveryPutOptions.LeasedKey);
        await recorder.WaitAsync(r => r.Value(_prefix + "w1") == "v2", "the second put");
        await worker.DisposeAsync();
        await recorder.WaitAsync(r => !r.Has(_prefix + "w1"), "the delete");

        Assert.Equal(
            [$"Put {_prefix}existing", $"Synced {_prefix}", $"Put {_prefix}w1", $"Put {_prefix}w1", $"Delete {_prefix}w1"],
            recorder.Events.Select(e => $"{e.Kind} {e.Key}"));
    }

    [Fact]
    public async Task WatchPrefixAsync_Cancelled_EndsWithOperationCanceled()
    {
        await using EtcdDiscovery watcher = await StartAsync(_etcd.Server);
        using var cancel = new CancellationTokenSource();
        int seen = 0;

        Task watching = Task.Run(async () =>
        {
            await foreach (DiscoveryEvent e in watcher.WatchPrefixAsync(_prefix, cancel.Token))
            {
                seen++;
                await cancel.CancelAsync();
            }
        });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watching.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, seen);
    }

    [Fact]
    public async Task WatchPrefixAsync_DiscoveryDisposed_EndsNormally()
    {
        EtcdDiscovery watcher = await StartAsync(_etcd.Server);
        var events = new List<DiscoveryEventKind>();
        Task watching = Task.Run(async () =>
        {
            await foreach (DiscoveryEvent e in watcher.WatchPrefixAsync(_prefix))
            {
                events.Add(e.Kind);
            }
        });
        await WaitUntilAsync(() => events.Count == 1, "the Synced", TimeSpan.FromSeconds(5));

        await watcher.DisposeAsync();

        await watching.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal([DiscoveryEventKind.Synced], events);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task KeepAliveSuspended_ShortTtl_KeyVanishesWithinTtlAndWatcherSeesDelete()
    {
        await using EtcdDiscovery watcher = await StartAsync(_etcd.Server);
        await using EtcdDiscovery worker = await StartAsync(_etcd.Server, ShortTtl);
        await worker.PutAsync(_prefix + "w", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.Has(_prefix + "w") && r.SyncedCount == 1, "the listing");

        var clock = Stopwatch.StartNew();
        worker.SuspendKeepAliveForTest();
        try
        {
            // Generous: etcd's lessor runs late on a loaded 2-core machine (seen once in CI at 10 s).
            await recorder.WaitAsync(r => !r.Has(_prefix + "w"), "the expiry delete", TimeSpan.FromSeconds(20));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            DiscoveryEntry? still = await watcher.GetAsync(_prefix + "w");
            throw new InvalidOperationException($"{e.Message}; a direct read finds the key {(still is null ? "gone (the watch missed the delete)" : "still there (etcd did not expire the lease)")}", e);
        }

        TimeSpan vanished = clock.Elapsed;

        _output.WriteLine($"leased key vanished {vanished.TotalSeconds:0.00} s after the keep-alive stopped (TTL {ShortTtl.TotalSeconds} s)");
        // Typically TTL + 0.1-0.4 s; the bound leaves room for etcd's lessor on a loaded CI machine.
        Assert.True(vanished < ShortTtl + TimeSpan.FromSeconds(8), $"took {vanished.TotalSeconds:0.00} s");
        Assert.Null(await watcher.GetAsync(_prefix + "w"));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task KeepAliveResumed_AfterLeaseExpired_GrantsNewLeaseAndRewritesLeasedKeys()
    {
        await using EtcdDiscovery watcher = await StartAsync(_etcd.Server);
        await using EtcdDiscovery worker = await StartAsync(_etcd.Server, ShortTtl);
        long instance = worker.InstanceId;
        await worker.PutAsync(_prefix + "put", Bytes("p"), DiscoveryPutOptions.LeasedKey);
        await worker.CreateAsync(_prefix + "mine", Bytes("m"), DiscoveryPutOptions.LeasedKey);
        await worker.CreateAsync(_prefix + "taken", Bytes("t"), DiscoveryPutOptions.LeasedKey);
        await worker.PutAsync(_prefix + "deleted", Bytes("d"), DiscoveryPutOptions.LeasedKey);
        await worker.DeleteAsync(_prefix + "deleted");
        await using var recorder = new WatchRecorder(watcher, _prefix);

        worker.SuspendKeepAliveForTest();
        await recorder.WaitAsync(r => r.Keys.Count == 0 && r.SyncedCount == 1, "the expiry deletes", TimeSpan.FromSeconds(10));
        Assert.True(await watcher.CreateAsync(_prefix + "taken", Bytes("other owner"), DiscoveryPutOptions.Persistent));
        var clock = Stopwatch.StartNew();
        worker.ResumeKeepAliveForTest();
        await recorder.WaitAsync(r => r.Has(_prefix + "put") && r.Has(_prefix + "mine"), "the re-registration", TimeSpan.FromSeconds(10));
        TimeSpan restored = clock.Elapsed;

        _output.WriteLine($"re-registered {restored.TotalSeconds:0.00} s after the keep-alive resumed");
        await WaitUntilAsync(() => worker.IsLeaseAlive, "IsLeaseAlive (set once every key is written)", TimeSpan.FromSeconds(5));
        Assert.Equal(instance, worker.InstanceId);
        Assert.NotEqual(instance, worker.CurrentLeaseId);
        Assert.Equal([_prefix + "mine", _prefix + "put", _prefix + "taken"], (await watcher.GetPrefixAsync(_prefix)).Select(e => e.Key));
        Assert.Equal("other owner", Text((await watcher.GetAsync(_prefix + "taken"))!.Value));

        await worker.RevokeAsync();
        Assert.Equal([_prefix + "taken"], (await watcher.GetPrefixAsync(_prefix)).Select(e => e.Key));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task EtcdKilledLongerThanTtl_Restarted_LeasedKeyBackAndWatcherConverges()
    {
        await using EtcdServer server = await EtcdServer.StartAsync();
        await using EtcdDiscovery watcher = await StartAsync(server, logger: new TestOutputLogger(_output, "watcher"));
        var workerLog = new TestOutputLogger(_output, "worker");
        await using EtcdDiscovery worker = await StartAsync(server, ShortTtl, workerLog);
        await worker.PutAsync(_prefix + "w", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.Has(_prefix + "w") && r.SyncedCount == 1, "the listing");

        server.Kill();
        await Task.Delay(ShortTtl + TimeSpan.FromSeconds(1.5));
        Assert.False(worker.IsLeaseAlive);
        var clock = Stopwatch.StartNew();
        await server.RestartAsync();
        TimeSpan etcdUp = clock.Elapsed;
        await WaitUntilAsync(() => worker.IsLeaseAlive, "the lease to be restored", TimeSpan.FromSeconds(10));
        TimeSpan leaseBack = clock.Elapsed;
        await recorder.WaitAsync(r => r.SyncedCount >= 2 && r.Has(_prefix + "w"), "the watch to resync", TimeSpan.FromSeconds(10));
        TimeSpan watchBack = clock.Elapsed;

        _output.WriteLine($"etcd healthy {etcdUp.TotalSeconds:0.00} s after restart; lease alive again at {leaseBack.TotalSeconds:0.00} s; watch resynced at {watchBack.TotalSeconds:0.00} s; lease {(worker.CurrentLeaseId == worker.InstanceId ? "kept" : "re-granted")}");
        Assert.Contains(workerLog.Entries, e => e.Id.Id == 1101 && e.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
        Assert.Contains(workerLog.Entries, e => e.Id.Id is 1102 or 1103 && e.Level == Microsoft.Extensions.Logging.LogLevel.Information);
        Assert.Equal("1", Text((await watcher.GetAsync(_prefix + "w"))!.Value));
        await worker.PutAsync(_prefix + "after", Bytes("2"), DiscoveryPutOptions.LeasedKey);
        await recorder.WaitAsync(r => r.Has(_prefix + "after"), "a put after the restart");
        await worker.RevokeAsync();
        await recorder.WaitAsync(r => r.Keys.Count == 0, "the deletes after revoke");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task EtcdFrozenLongerThanTtl_Thawed_LeaseRestoredAndWatcherConverges()
    {
        await using EtcdServer server = await EtcdServer.StartAsync();
        await using EtcdDiscovery watcher = await StartAsync(server, logger: new TestOutputLogger(_output, "watcher"));
        var workerLog = new TestOutputLogger(_output, "worker");
        await using EtcdDiscovery worker = await StartAsync(server, ShortTtl, workerLog);
        await worker.PutAsync(_prefix + "w", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.Has(_prefix + "w") && r.SyncedCount == 1, "the listing");

        await server.FreezeAsync();
        var frozen = Stopwatch.StartNew();
        DiscoveryUnavailableException e = await Assert.ThrowsAsync<DiscoveryUnavailableException>(() => worker.GetAsync(_prefix + "w"));
        TimeSpan callFailed = frozen.Elapsed;
        await WaitUntilAsync(() => !worker.IsLeaseAlive, "the worker to notice the lost lease", TimeSpan.FromSeconds(10));
        await server.ThawAsync();
        var clock = Stopwatch.StartNew();
        await WaitUntilAsync(() => worker.IsLeaseAlive, "the lease to be restored", TimeSpan.FromSeconds(10));
        TimeSpan leaseBack = clock.Elapsed;
        await recorder.WaitAsync(r => r.Has(_prefix + "w"), "the watcher to see the key again", TimeSpan.FromSeconds(10));

        _output.WriteLine($"a call to frozen etcd failed after {callFailed.TotalSeconds:0.00} s ({e.Message}); lease alive {leaseBack.TotalSeconds:0.00} s after thaw ({(worker.CurrentLeaseId == worker.InstanceId ? "kept" : "re-granted")}); events: {string.Join(", ", recorder.Events.Select(x => $"{x.Kind} {x.Key[_prefix.Length..]}"))}");
        Assert.Contains(server.Endpoint, e.Message, StringComparison.Ordinal);
        Assert.InRange(callFailed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(4));
        Assert.Equal("1", Text((await watcher.GetAsync(_prefix + "w"))!.Value));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task GetAsync_EtcdFrozenAndThreadPoolSaturated_FailsWithinCallTimeout()
    {
        await using EtcdServer server = await EtcdServer.StartAsync();
        await using EtcdDiscovery discovery = await StartAsync(server);
        await discovery.PutAsync(_prefix + "w", Bytes("1"), DiscoveryPutOptions.Persistent);
        await server.FreezeAsync();
        try
        {
            var clock = Stopwatch.StartNew();
            TimeSpan failedAt;
            Task<DiscoveryEntry?> call;
            using (var saturation = new ThreadPoolSaturation())
            {
                // The pool stays blocked until the call ends: only a limit that needs no pool thread ends it.
                call = discovery.GetAsync(_prefix + "w");
                Task<TimeSpan> ended = call.ContinueWith(
                    _ =>
                    {
                        TimeSpan at = clock.Elapsed;
                        saturation.Dispose();
                        return at;
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
                failedAt = await ended;
            }

            DiscoveryUnavailableException e = await Assert.ThrowsAsync<DiscoveryUnavailableException>(() => call);
            _output.WriteLine($"the call failed after {failedAt.TotalSeconds:0.00} s with every pool thread blocked: {e.Message}");
            Assert.Contains(server.Endpoint, e.Message, StringComparison.Ordinal);
            Assert.InRange(failedAt, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(4));
        }
        finally
        {
            await server.ThawAsync();
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task StartAsync_NothingListening_ThrowsUnavailableWithinConnectTimeoutNamingAddress()
    {
        string endpoint = $"http://127.0.0.1:{FreePort()}";
        var options = EtcdDiscoveryOptions.Default with { Endpoints = [endpoint], ConnectTimeout = TimeSpan.FromSeconds(1.5) };
        await using var discovery = new EtcdDiscovery(options);
        var clock = Stopwatch.StartNew();

        DiscoveryUnavailableException e = await Assert.ThrowsAsync<DiscoveryUnavailableException>(() => discovery.StartAsync());

        _output.WriteLine($"{clock.Elapsed.TotalSeconds:0.00} s: {e.Message}");
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3.5));
        Assert.Contains($"etcd at {endpoint} is unreachable (ETCD_ENDPOINTS)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task DisposeAsync_EtcdDown_ReturnsWithinCallTimeout()
    {
        EtcdServer server = await EtcdServer.StartAsync();
        EtcdDiscovery discovery;
        try
        {
            discovery = await StartAsync(server);
            await discovery.PutAsync(_prefix + "w", Bytes("1"), DiscoveryPutOptions.LeasedKey);
            await using EtcdDiscovery watcher = await StartAsync(server);
            await using var recorder = new WatchRecorder(watcher, _prefix);
            await recorder.WaitAsync(r => r.SyncedCount == 1, "the listing");
        }
        finally
        {
            await server.DisposeAsync();
        }

        var clock = Stopwatch.StartNew();
        await discovery.DisposeAsync();

        _output.WriteLine($"dispose with etcd down took {clock.Elapsed.TotalSeconds:0.00} s");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"took {clock.Elapsed.TotalSeconds:0.00} s");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task GetAsync_EtcdDown_ThrowsUnavailableNamingAddress()
    {
        await using EtcdServer server = await EtcdServer.StartAsync();
        await using EtcdDiscovery discovery = await StartAsync(server);
        server.Kill();

        DiscoveryUnavailableException e = await Assert.ThrowsAsync<DiscoveryUnavailableException>(() => discovery.GetAsync(_prefix + "x"));

        Assert.Contains(server.Endpoint, e.Message, StringComparison.Ordinal);
    }

    private async Task<EtcdDiscovery> StartAsync(EtcdServer server, TimeSpan? ttl = null, TestOutputLogger? logger = null)
    {
        var discovery = new EtcdDiscovery(EtcdDiscoveryOptions.Default with
        {
            Endpoints = [server.Endpoint],
            LeaseTtl = ttl ?? TimeSpan.FromSeconds(10),
            Logger = logger ?? new TestOutputLogger(_output, "etcd"),
        });
        try
        {
            await discovery.StartAsync();
            return discovery;
        }
        catch
        {
            await discovery.DisposeAsync();
            throw;
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds} s waiting for {what}");
            }

            await Task.Delay(20);
        }
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static ReadOnlyMemory<byte> Bytes(string s) => Encoding.UTF8.GetBytes(s);

    private static string Text(ReadOnlyMemory<byte> bytes) => Encoding.UTF8.GetString(bytes.Span);

    /// <summary>Applies a watch's events to a map, as a consumer would, and records them.</summary>
    private sealed class WatchRecorder : IAsyncDisposable
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
                                    _state[e.Key] = Text(e.Value);
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
}
