using System.Collections.Concurrent;
using Dynamo.Runtime.Discovery;
using static Dynamo.Tests.Runtime.Discovery.Utf8;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>
/// The discovery contract (src/Dynamo.Runtime/Discovery/README.md, "Contract"), run against the in-memory store
/// and a real etcd alike. Each test uses keys under a prefix of its own; everything waits for conditions.
/// </summary>
public abstract class DiscoveryContractTests(DiscoveryTwin twin) : TwinTests<DiscoveryTwin>(twin)
{
    private readonly string _prefix = $"t/{Guid.NewGuid():N}/";

    [Fact]
    public async Task PutAsync_ThenGetAsync_ReturnsValueAndRevision()
    {
        IDiscovery discovery = await Twin.StartAsync();

        await discovery.PutAsync(_prefix + "a", Bytes("one"), DiscoveryPutOptions.Persistent);
        DiscoveryEntry? entry = await discovery.GetAsync(_prefix + "a");

        Assert.NotNull(entry);
        Assert.Equal(_prefix + "a", entry.Key);
        Assert.Equal("one", Text(entry.Value));
        Assert.True(entry.Revision > 0);
        Assert.Equal(Twin.ExpectedName, discovery.Name);
        Assert.Equal(Twin.ExpectedAddress, discovery.Address);
        Assert.True(discovery.IsLeaseAlive);
        Assert.NotEqual(0, discovery.InstanceId);
    }

    [Fact]
    public async Task PutAsync_SameKeyAgain_NewValueAndHigherRevision()
    {
        IDiscovery discovery = await Twin.StartAsync();
        await discovery.PutAsync(_prefix + "a", Bytes("one"), DiscoveryPutOptions.Persistent);
        DiscoveryEntry first = (await discovery.GetAsync(_prefix + "a"))!;

        await discovery.PutAsync(_prefix + "a", Bytes("two"), DiscoveryPutOptions.LeasedKey);
        DiscoveryEntry second = (await discovery.GetAsync(_prefix + "a"))!;

        Assert.Equal("two", Text(second.Value));
        Assert.True(second.Revision > first.Revision, $"revision {second.Revision} after {first.Revision}");
    }

    [Fact]
    public async Task GetAsync_MissingKey_ReturnsNull()
    {
        IDiscovery discovery = await Twin.StartAsync();

        Assert.Null(await discovery.GetAsync(_prefix + "missing"));
    }

    [Fact]
    public async Task GetPrefixAsync_KeysInsideAndOutside_ReturnsOnlyPrefixInKeyOrder()
    {
        IDiscovery discovery = await Twin.StartAsync();
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
        IDiscovery discovery = await Twin.StartAsync();
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
        IDiscovery first = await Twin.StartAsync();
        IDiscovery second = await Twin.StartAsync();

        Assert.True(await first.CreateAsync(_prefix + "owner", Bytes("first"), DiscoveryPutOptions.LeasedKey));
        Assert.False(await second.CreateAsync(_prefix + "owner", Bytes("second"), DiscoveryPutOptions.LeasedKey));
        Assert.False(await first.CreateAsync(_prefix + "owner", Bytes("again"), DiscoveryPutOptions.Persistent));

        Assert.Equal("first", Text((await second.GetAsync(_prefix + "owner"))!.Value));
    }

    [Fact]
    public async Task CreateAsync_LeasedKeyOfARevokedOwner_FreeForTheNextOwner()
    {
        IDiscovery first = await Twin.StartAsync();
        IDiscovery second = await Twin.StartAsync();
        Assert.True(await first.CreateAsync(_prefix + "owner", Bytes("first"), DiscoveryPutOptions.LeasedKey));

        await first.RevokeAsync();

        Assert.True(await second.CreateAsync(_prefix + "owner", Bytes("second"), DiscoveryPutOptions.LeasedKey));
        Assert.Equal("second", Text((await first.GetAsync(_prefix + "owner"))!.Value));
    }

    [Fact]
    public async Task StartAsync_TwoProcesses_EachItsOwnInstanceIdAndLiveLease()
    {
        IDiscovery first = Twin.Create();
        IDiscovery second = Twin.Create();
        Assert.Throws<InvalidOperationException>(() => first.InstanceId);
        Assert.False(first.IsLeaseAlive);

        await first.StartAsync();
        await second.StartAsync();
        long id = first.InstanceId;
        await first.StartAsync();

        Assert.Equal(id, first.InstanceId);
        Assert.NotEqual(first.InstanceId, second.InstanceId);
        Assert.True(first.IsLeaseAlive);
        Assert.True(second.IsLeaseAlive);
    }

    [Fact]
    public async Task Calls_BeforeStartAsync_InvalidOperation()
    {
        IDiscovery discovery = Twin.Create();

        await Assert.ThrowsAsync<InvalidOperationException>(() => discovery.PutAsync(_prefix + "a", Bytes("1"), DiscoveryPutOptions.Persistent));
        await Assert.ThrowsAsync<InvalidOperationException>(() => discovery.CreateAsync(_prefix + "a", Bytes("1"), DiscoveryPutOptions.LeasedKey));
        await Assert.ThrowsAsync<InvalidOperationException>(() => discovery.GetAsync(_prefix + "a"));
        await Assert.ThrowsAsync<InvalidOperationException>(() => discovery.GetPrefixAsync(_prefix));
        await Assert.ThrowsAsync<InvalidOperationException>(() => discovery.DeleteAsync(_prefix + "a"));
        await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await foreach (DiscoveryEvent e in discovery.WatchPrefixAsync(_prefix))
            {
            }
        });
    }

    [Fact]
    public async Task Calls_EmptyKey_ArgumentException()
    {
        IDiscovery discovery = await Twin.StartAsync();

        await Assert.ThrowsAsync<ArgumentException>(() => discovery.PutAsync("", Bytes("1"), DiscoveryPutOptions.Persistent));
        await Assert.ThrowsAsync<ArgumentException>(() => discovery.CreateAsync("", Bytes("1"), DiscoveryPutOptions.Persistent));
        await Assert.ThrowsAsync<ArgumentException>(() => discovery.GetAsync(""));
        await Assert.ThrowsAsync<ArgumentException>(() => discovery.DeleteAsync(""));
    }

    [Fact]
    public async Task RevokeAsync_LeasedAndPersistentKeys_LeasedVanishAtOncePersistentStays()
    {
        IDiscovery owner = await Twin.StartAsync();
        IDiscovery observer = await Twin.StartAsync();
        await WriteLeasedAndPersistentKeysAsync(owner);

        await owner.RevokeAsync();
        await owner.RevokeAsync();

        Assert.Equal([_prefix + "blob"], (await observer.GetPrefixAsync(_prefix)).Select(e => e.Key));
        Assert.False(owner.IsLeaseAlive);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.PutAsync(_prefix + "late", Bytes("x"), DiscoveryPutOptions.LeasedKey));

        // Until disposed, the rest keeps working.
        await owner.PutAsync(_prefix + "blob2", Bytes("3"), DiscoveryPutOptions.Persistent);
        Assert.Equal("3", Text((await owner.GetAsync(_prefix + "blob2"))!.Value));
    }

    [Fact]
    public async Task DisposeAsync_LeasedKey_VanishesAtOnceAndCallsThrowObjectDisposed()
    {
        IDiscovery observer = await Twin.StartAsync();
        IDiscovery owner = await Twin.StartAsync();
        await owner.PutAsync(_prefix + "leased", Bytes("1"), DiscoveryPutOptions.LeasedKey);

        await owner.DisposeAsync();
        await owner.DisposeAsync();

        Assert.Null(await observer.GetAsync(_prefix + "leased"));
        Assert.False(owner.IsLeaseAlive);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.GetAsync(_prefix + "leased"));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.PutAsync(_prefix + "blob", Bytes("x"), DiscoveryPutOptions.Persistent));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => owner.StartAsync());
    }

    [Fact]
    public async Task WatchPrefixAsync_OtherProcessPutsThenDisposes_SeesListingSyncedPutDelete()
    {
        IDiscovery watcher = await Twin.StartAsync();
        IDiscovery worker = await Twin.StartAsync();
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
    public async Task WatchPrefixAsync_ChangesFromOneWriter_ExactlyThoseUnderThePrefixInOrder()
    {
        IDiscovery watcher = await Twin.StartAsync();
        IDiscovery writer = await Twin.StartAsync();
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.SyncedCount == 1, "the initial Synced");

        var expected = new List<string> { $"Synced {_prefix}" };
        for (int i = 0; i < 60; i++)
        {
            string key = _prefix + (i % 7);
            switch (i % 4)
            {
                case 0 or 1:
                    await writer.PutAsync(key, Bytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), i % 2 == 0 ? DiscoveryPutOptions.LeasedKey : DiscoveryPutOptions.Persistent);
                    expected.Add($"Put {key}");
                    break;
                case 2:
                    bool existed = await writer.GetAsync(key) is not null;
                    await writer.DeleteAsync(key);
                    if (existed)
                    {
                        expected.Add($"Delete {key}");
                    }

                    break;
                default:
                    await writer.PutAsync(_prefix[..^1] + "-outside/" + i, Bytes("x"), DiscoveryPutOptions.Persistent);
                    break;
            }
        }

        await writer.PutAsync(_prefix + "last", Bytes("end"), DiscoveryPutOptions.Persistent);
        expected.Add($"Put {_prefix}last");
        await recorder.WaitAsync(r => r.Has(_prefix + "last"), "the last put");

        Assert.Equal(expected, recorder.Events.Select(e => $"{e.Kind} {e.Key}"));
    }

    [Fact]
    public async Task WatchPrefixAsync_WatcherReadsNothingWhileManyChangesHappen_LosesNothing()
    {
        IDiscovery watcher = await Twin.StartAsync();
        IDiscovery writer = await Twin.StartAsync();
        await using IAsyncEnumerator<DiscoveryEvent> events = watcher.WatchPrefixAsync(_prefix).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync());
        Assert.Equal(DiscoveryEventKind.Synced, events.Current.Kind);

        const int changes = 300;
        for (int i = 0; i < changes; i++)
        {
            await writer.PutAsync($"{_prefix}{i:0000}", Bytes("v"), DiscoveryPutOptions.Persistent);
        }

        var seen = new List<string>();
        while (seen.Count < changes && await events.MoveNextAsync().AsTask().WaitAsync(Eventually.Patience))
        {
            seen.Add($"{events.Current.Kind} {events.Current.Key}");
        }

        Assert.Equal(Enumerable.Range(0, changes).Select(i => $"Put {_prefix}{i:0000}"), seen);
    }

    [Fact]
    public async Task WatchPrefixAsync_OwnerRevokes_WatcherSeesDeletesOfItsLeasedKeysOnly()
    {
        IDiscovery watcher = await Twin.StartAsync();
        IDiscovery owner = await Twin.StartAsync();
        await WriteLeasedAndPersistentKeysAsync(owner);
        await using var recorder = new WatchRecorder(watcher, _prefix);
        await recorder.WaitAsync(r => r.SyncedCount == 1 && r.Keys.Count == 3, "the listing");

        await owner.RevokeAsync();
        await recorder.WaitAsync(r => r.Keys.Count == 1, "the deletes");

        Assert.Equal([_prefix + "blob"], recorder.Keys);
        Assert.Equal(
            [$"Delete {_prefix}created", $"Delete {_prefix}leased"],
            recorder.Events.Skip(4).Select(e => $"{e.Kind} {e.Key}").Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task WatchPrefixAsync_Cancelled_EndsWithOperationCanceled()
    {
        IDiscovery watcher = await Twin.StartAsync();
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

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watching.WaitAsync(Eventually.Patience));
        Assert.Equal(1, seen);
    }

    [Fact]
    public async Task WatchPrefixAsync_DiscoveryDisposed_EndsNormally()
    {
        IDiscovery watcher = await Twin.StartAsync();
        var events = new ConcurrentQueue<DiscoveryEventKind>();
        Task watching = Task.Run(async () =>
        {
            await foreach (DiscoveryEvent e in watcher.WatchPrefixAsync(_prefix))
            {
                events.Enqueue(e.Kind);
            }
        });
        await Eventually.WaitUntilAsync(() => events.Count == 1, "the Synced");

        await watcher.DisposeAsync();

        await watching.WaitAsync(Eventually.Patience);
        Assert.Equal([DiscoveryEventKind.Synced], events);
    }

    /// <summary>Two leased keys (one put, one created) and one persistent key ("blob") under the test's prefix.</summary>
    private async Task WriteLeasedAndPersistentKeysAsync(IDiscovery owner)
    {
        await owner.PutAsync(_prefix + "leased", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await owner.CreateAsync(_prefix + "created", Bytes("1"), DiscoveryPutOptions.LeasedKey);
        await owner.PutAsync(_prefix + "blob", Bytes("2"), DiscoveryPutOptions.Persistent);
    }
}
