using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace Dynamo.Runtime.Discovery;

/// <content>The primary lease: keep-alive every TTL/3, loss detection, and re-registration of the leased keys.</content>
internal sealed partial class EtcdDiscovery
{
    private async Task KeepAliveLoopAsync(CancellationToken stop)
    {
        TimeSpan period = TimeSpan.FromTicks(_options.LeaseTtl.Ticks / 3);
        TimeSpan retry = period < TimeSpan.FromMilliseconds(500) ? period : TimeSpan.FromMilliseconds(500);
        long lastRefresh = _time.GetTimestamp();
        bool failing = false;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(failing ? retry : period, _time, stop).ConfigureAwait(false);
                if (_keepAliveSuspended)
                {
                    lastRefresh = _time.GetTimestamp();
                    continue;
                }

                long lease = Interlocked.Read(ref _leaseId);
                string? lostReason = null;
                try
                {
                    long ttl = await KeepAliveOnceAsync(lease, stop).ConfigureAwait(false);
                    if (ttl > 0)
                    {
                        lastRefresh = _time.GetTimestamp();
                        failing = false;
                        continue;
                    }

                    lostReason = "etcd reports it expired";
                }
                catch (Exception e) when (!stop.IsCancellationRequested)
                {
                    failing = true;
                    Log.KeepAliveFailed(_logger, lease, Describe(e));
                    if (_time.GetElapsedTime(lastRefresh) >= _options.LeaseTtl)
                    {
                        lostReason = $"no keep-alive for {_options.LeaseTtl.TotalSeconds:0.#} s: {Describe(e)}";
                    }
                }

                if (lostReason is not null)
                {
                    _leaseAlive = false;
                    Log.LeaseLost(_logger, lease, Address, lostReason);
                    await RestoreLeaseAsync(lease, stop).ConfigureAwait(false);
                    lastRefresh = _time.GetTimestamp();
                    failing = false;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Retries until the lost lease is alive again or a new one is granted and every leased key rewritten.</summary>
    private async Task RestoreLeaseAsync(long lostLease, CancellationToken stop)
    {
        EtcdClient client = _client!;
        TimeSpan backoff = MinBackoff;
        while (true)
        {
            try
            {
                // etcd restarted from its data dir extends every lease it had: then the keys are still there.
                if (await KeepAliveOnceAsync(lostLease, stop).ConfigureAwait(false) > 0)
                {
                    _leaseAlive = true;
                    Log.LeaseRevived(_logger, lostLease, Address);
                    return;
                }

                await _leaseLock.WaitAsync(stop).ConfigureAwait(false);
                int written;
                long lease;
                try
                {
                    LeaseGrantResponse grant = await client.LeaseGrantAsync(new LeaseGrantRequest { TTL = _ttlSeconds }, deadline: Deadline(), cancellationToken: stop).ConfigureAwait(false);
                    lease = grant.ID;
                    written = await RewriteLeasedKeysAsync(client, lostLease, lease, stop).ConfigureAwait(false);
                    Interlocked.Exchange(ref _leaseId, lease);
                    _leaseAlive = true;
                }
                finally
                {
                    _leaseLock.Release();
                }

                Log.LeaseRestored(_logger, lease, Address, written);
                return;
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                Log.RestoreFailed(_logger, Address, Describe(e));
            }

            await Task.Delay(backoff, _time, stop).ConfigureAwait(false);
            backoff = backoff * 2 < MaxBackoff ? backoff * 2 : MaxBackoff;
        }
    }

    /// <summary>Writes every remembered leased key with <paramref name="lease"/>; called under the lease lock.</summary>
    private async Task<int> RewriteLeasedKeysAsync(EtcdClient client, long lostLease, long lease, CancellationToken stop)
    {
        List<string>? taken = null;
        foreach ((string key, LeasedKey leased) in _leased)
        {
            var put = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = leased.Value, Lease = lease };
            if (!leased.CreateOnly)
            {
                await client.PutAsync(put, deadline: Deadline(), cancellationToken: stop).ConfigureAwait(false);
                continue;
            }

            // A create-if-absent key is written again only if it is still free or still ours: another owner
            // may have claimed it while the lease was lost.
            if (await CreateIfAbsentAsync(client, put, Deadline(), stop).ConfigureAwait(false))
            {
                continue;
            }

            var stillOurs = new TxnRequest();
            stillOurs.Compare.Add(new Compare { Key = put.Key, Target = Compare.Types.CompareTarget.Lease, Result = Compare.Types.CompareResult.Equal, Lease = lostLease });
            stillOurs.Success.Add(new RequestOp { RequestPut = put });
            TxnResponse response = await client.TransactionAsync(stillOurs, deadline: Deadline(), cancellationToken: stop).ConfigureAwait(false);
            if (!response.Succeeded)
            {
                (taken ??= []).Add(key);
            }
        }

        foreach (string key in taken ?? [])
        {
            _leased.Remove(key);
            Log.LeasedKeyTaken(_logger, key);
        }

        return _leased.Count;
    }

    /// <summary>One keep-alive round trip; returns the TTL etcd reports (0 or less: the lease is gone).</summary>
    private async Task<long> KeepAliveOnceAsync(long lease, CancellationToken cancellationToken)
    {
        using AsyncDuplexStreamingCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse> call =
            _client!.GetConnection().LeaseClient.LeaseKeepAlive(deadline: Deadline(), cancellationToken: cancellationToken);
        await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, cancellationToken).ConfigureAwait(false);
        if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "the keep-alive stream ended without an answer"));
        }

        long ttl = call.ResponseStream.Current.TTL;
        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        return ttl;
    }
}
