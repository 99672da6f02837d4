using System.Threading.Channels;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// The key/value state behind <see cref="InMemoryDiscovery"/>: keys in order, each with its lease (0 for
/// none) and revision. One lock orders every change, so each watcher sees the changes in the order they
/// happened, right after its initial listing.
/// </summary>
public sealed class InMemoryDiscoveryStore
{
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, (ReadOnlyMemory<byte> Value, long Lease, long Revision)> _keys = new(StringComparer.Ordinal);
    private readonly List<(string Prefix, ChannelWriter<DiscoveryEvent> Writer)> _watchers = [];
    private long _revision;
    private long _nextLease = 0x1000_0000_0000;

    internal long NewLease()
    {
        lock (_lock)
        {
            return ++_nextLease;
        }
    }

    internal bool Put(string key, ReadOnlyMemory<byte> value, long lease, bool createOnly)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        byte[] copy = value.ToArray();
        lock (_lock)
        {
            if (createOnly && _keys.ContainsKey(key))
            {
                return false;
            }

            _keys[key] = (copy, lease, ++_revision);
            Notify(new DiscoveryEvent(DiscoveryEventKind.Put, key, copy));
            return true;
        }
    }

    internal void Delete(string key)
    {
        lock (_lock)
        {
            if (_keys.Remove(key))
            {
                _revision++;
                Notify(new DiscoveryEvent(DiscoveryEventKind.Delete, key, ReadOnlyMemory<byte>.Empty));
            }
        }
    }

    internal DiscoveryEntry? Get(string key)
    {
        lock (_lock)
        {
            return _keys.TryGetValue(key, out var v) ? new DiscoveryEntry(key, v.Value, v.Revision) : null;
        }
    }

    internal IReadOnlyList<DiscoveryEntry> List(string prefix)
    {
        lock (_lock)
        {
            return _keys.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                .Select(kv => new DiscoveryEntry(kv.Key, kv.Value.Value, kv.Value.Revision))
                .ToArray();
        }
    }

    internal void Revoke(long lease)
    {
        lock (_lock)
        {
            foreach (string key in _keys.Where(kv => kv.Value.Lease == lease).Select(kv => kv.Key).ToArray())
            {
                _keys.Remove(key);
                _revision++;
                Notify(new DiscoveryEvent(DiscoveryEventKind.Delete, key, ReadOnlyMemory<byte>.Empty));
            }
        }
    }

    internal IDisposable Watch(string prefix, ChannelWriter<DiscoveryEvent> writer)
    {
        lock (_lock)
        {
            foreach (var kv in _keys.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)))
            {
                writer.TryWrite(new DiscoveryEvent(DiscoveryEventKind.Put, kv.Key, kv.Value.Value));
            }

            writer.TryWrite(new DiscoveryEvent(DiscoveryEventKind.Synced, prefix, ReadOnlyMemory<byte>.Empty));
            var entry = (prefix, writer);
            _watchers.Add(entry);
            return new Unwatch(this, entry);
        }
    }

    private void Notify(DiscoveryEvent e)
    {
        foreach (var (prefix, writer) in _watchers)
        {
            if (e.Key.StartsWith(prefix, StringComparison.Ordinal))
            {
                writer.TryWrite(e);
            }
        }
    }

    private sealed class Unwatch(InMemoryDiscoveryStore store, (string Prefix, ChannelWriter<DiscoveryEvent> Writer) entry) : IDisposable
    {
        public void Dispose()
        {
            lock (store._lock)
            {
                store._watchers.Remove(entry);
            }

            entry.Writer.TryComplete();
        }
    }
}
