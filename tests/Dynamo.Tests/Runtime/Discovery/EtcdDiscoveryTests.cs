using System.Diagnostics;
using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Infrastructure;
using Xunit.Abstractions;
using static Dynamo.Tests.Runtime.Discovery.Utf8;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>
/// What only the etcd backend has (lease expiry, keep-alive, etcd killed, frozen or absent, a saturated
/// process), against a real etcd; the tests that stop etcd start their own. The contract both backends keep
/// is in <see cref="DiscoveryContractTests"/>. Timing collection: these bound durations.
/// </summary>
[Collection(TimingCollection.Name)]
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
        await Eventually.WaitUntilAsync(() => worker.IsLeaseAlive, "IsLeaseAlive (set once every key is written)", TimeSpan.FromSeconds(5));
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
        await Eventually.WaitUntilAsync(() => !worker.IsLeaseAlive, "the worker to count its lease lost (no keep-alive for the TTL)");
        var clock = Stopwatch.StartNew();
        await server.RestartAsync();
        TimeSpan etcdUp = clock.Elapsed;
        await Eventually.WaitUntilAsync(() => worker.IsLeaseAlive, "the lease to be restored", TimeSpan.FromSeconds(10));
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
        await Eventually.WaitUntilAsync(() => !worker.IsLeaseAlive, "the worker to notice the lost lease", TimeSpan.FromSeconds(10));
        await server.ThawAsync();
        var clock = Stopwatch.StartNew();
        await Eventually.WaitUntilAsync(() => worker.IsLeaseAlive, "the lease to be restored", TimeSpan.FromSeconds(10));
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

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
