using System.Runtime.CompilerServices;
using System.Threading.Channels;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Mvccpb;

namespace Dynamo.Runtime.Discovery;

/// <content>Prefix watches: listing, then the raw gRPC watch stream, resynchronised by listing again when it breaks.</content>
internal sealed partial class EtcdDiscovery
{
    /// <inheritdoc/>
    /// <remarks>
    /// The watch starts at the listing's revision + 1, so no change between the listing and the watch is
    /// lost. Disposing this object ends the stream normally; cancelling <paramref name="cancellationToken"/>
    /// ends it with <see cref="OperationCanceledException"/>.
    /// </remarks>
    public async IAsyncEnumerable<DiscoveryEvent> WatchPrefixAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        EtcdClient client = Client;
        Channel<DiscoveryEvent> events = Channel.CreateBounded<DiscoveryEvent>(new BoundedChannelOptions(_options.WatchBufferCapacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        using var pumpStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposed.Token);
        Task pump = Task.Run(() => PumpWatchAsync(client, prefix, events.Writer, pumpStop.Token), CancellationToken.None);
        try
        {
            while (await events.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (events.Reader.TryRead(out DiscoveryEvent? e))
                {
                    yield return e;
                }
            }
        }
        finally
        {
            await pumpStop.CancelAsync().ConfigureAwait(false);
            await pump.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task PumpWatchAsync(EtcdClient client, string prefix, ChannelWriter<DiscoveryEvent> writer, CancellationToken stop)
    {
        // What the consumer has been told: key -> (value, mod revision).
        var seen = new Dictionary<string, KeyValue>(StringComparer.Ordinal);
        bool first = true;
        TimeSpan backoff = MinBackoff;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    RangeResponse listing = await ListAsync(client, prefix, stop).ConfigureAwait(false);
                    await ApplyListingAsync(prefix, listing, seen, writer, first, stop).ConfigureAwait(false);
                    first = false;
                    backoff = MinBackoff;
                    string reason = await WatchFromAsync(client, prefix, listing.Header.Revision + 1, seen, writer, stop).ConfigureAwait(false);
                    Log.WatchLost(_logger, prefix, Address, reason);
                    continue;
                }
                catch (Exception e) when (!stop.IsCancellationRequested && e is not ChannelClosedException)
                {
                    Log.WatchRetry(_logger, prefix, Address, Describe(e));
                }

                await Task.Delay(backoff, _time, stop).ConfigureAwait(false);
                backoff = backoff * 2 < MaxBackoff ? backoff * 2 : MaxBackoff;
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            writer.TryComplete();
        }
    }

    private async Task ApplyListingAsync(string prefix, RangeResponse listing, Dictionary<string, KeyValue> seen, ChannelWriter<DiscoveryEvent> writer, bool first, CancellationToken stop)
    {
        int puts = 0;
        int deletes = 0;
        if (!first)
        {
            var present = new HashSet<string>(listing.Kvs.Count, StringComparer.Ordinal);
            foreach (KeyValue kv in listing.Kvs)
            {
                present.Add(kv.Key.ToStringUtf8());
            }

            foreach (string key in seen.Keys.Where(k => !present.Contains(k)).ToList())
            {
                seen.Remove(key);
                deletes++;
                await writer.WriteAsync(new DiscoveryEvent(DiscoveryEventKind.Delete, key, ReadOnlyMemory<byte>.Empty), stop).ConfigureAwait(false);
            }
        }

        foreach (KeyValue kv in listing.Kvs)
        {
            string key = kv.Key.ToStringUtf8();
            if (seen.TryGetValue(key, out KeyValue? old) && old.ModRevision == kv.ModRevision && old.Value.Equals(kv.Value))
            {
                continue;
            }

            seen[key] = kv;
            puts++;
            await writer.WriteAsync(new DiscoveryEvent(DiscoveryEventKind.Put, key, kv.Value.Memory), stop).ConfigureAwait(false);
        }

        await writer.WriteAsync(new DiscoveryEvent(DiscoveryEventKind.Synced, prefix, ReadOnlyMemory<byte>.Empty), stop).ConfigureAwait(false);
        if (!first)
        {
            Log.WatchResynced(_logger, prefix, puts, deletes);
        }
    }

    /// <summary>Follows the watch stream until it breaks; returns why.</summary>
    private async Task<string> WatchFromAsync(EtcdClient client, string prefix, long startRevision, Dictionary<string, KeyValue> seen, ChannelWriter<DiscoveryEvent> writer, CancellationToken stop)
    {
        (ByteString key, ByteString rangeEnd) = PrefixRange(prefix);
        using AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call = client.GetConnection().WatchClient.Watch(cancellationToken: stop);
        await call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest { Key = key, RangeEnd = rangeEnd, StartRevision = startRevision },
        }, stop).ConfigureAwait(false);
        try
        {
            while (await call.ResponseStream.MoveNext(stop).ConfigureAwait(false))
            {
                WatchResponse response = call.ResponseStream.Current;
                if (response.CompactRevision > 0)
                {
                    return $"history compacted at revision {response.CompactRevision}";
                }

                if (response.Canceled)
                {
                    return $"etcd cancelled the watch: {response.CancelReason}";
                }

                foreach (Event e in response.Events)
                {
                    string name = e.Kv.Key.ToStringUtf8();
                    if (e.Type == Event.Types.EventType.Put)
                    {
                        seen[name] = e.Kv;
                        await writer.WriteAsync(new DiscoveryEvent(DiscoveryEventKind.Put, name, e.Kv.Value.Memory), stop).ConfigureAwait(false);
                    }
                    else if (seen.Remove(name))
                    {
                        await writer.WriteAsync(new DiscoveryEvent(DiscoveryEventKind.Delete, name, ReadOnlyMemory<byte>.Empty), stop).ConfigureAwait(false);
                    }
                }
            }

            return "the watch stream ended";
        }
        catch (Exception e) when (IsCallFailure(e, stop))
        {
            return Describe(e);
        }
    }
}
