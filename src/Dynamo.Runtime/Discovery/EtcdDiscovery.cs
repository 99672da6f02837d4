using System.Text;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mvccpb;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// <see cref="IDiscovery"/> on etcd v3 (dotnet-etcd's gRPC clients). One primary lease per object, kept alive
/// every TTL/3 in the background; when it is lost (etcd unreachable longer than the TTL, or etcd reports it
/// expired) a new lease is granted as soon as etcd answers and every leased key is written again. Watches are
/// read from the raw gRPC watch stream and resynchronised by listing when the stream breaks. See the folder's
/// README for the guarantees.
/// </summary>
internal sealed partial class EtcdDiscovery : IDiscovery
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(100);

    private readonly EtcdDiscoveryOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _ttlSeconds;

    // Guards _leased and the current lease id against a concurrent re-registration.
    private readonly SemaphoreSlim _leaseLock = new(1, 1);
    private readonly Dictionary<string, LeasedKey> _leased = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _keepAliveStop = new();
    private readonly CancellationTokenSource _disposed = new();

    private EtcdClient? _client;
    private Task _keepAlive = Task.CompletedTask;
    private long _instanceId;
    private long _leaseId;
    private volatile bool _leaseAlive;
    private volatile bool _keepAliveSuspended;
    private int _revoked;
    private int _disposeStarted;

    /// <summary>Creates the backend; nothing is contacted before <see cref="StartAsync"/>.</summary>
    /// <exception cref="ArgumentException">No endpoint, or a TTL or timeout that is not positive.</exception>
    public EtcdDiscovery(EtcdDiscoveryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Endpoints.Count == 0)
        {
            throw new ArgumentException("ETCD_ENDPOINTS: no etcd endpoint given", nameof(options));
        }

        if (options.LeaseTtl < TimeSpan.FromSeconds(1) || options.ConnectTimeout <= TimeSpan.Zero || options.CallTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("etcd discovery: LeaseTtl must be at least 1 s, ConnectTimeout and CallTimeout positive", nameof(options));
        }

        if (options.WatchBufferCapacity < 1)
        {
            throw new ArgumentException("etcd discovery: WatchBufferCapacity must be positive", nameof(options));
        }

        _options = options;
        _time = options.TimeProvider ?? TimeProvider.System;
        _logger = options.Logger ?? NullLogger.Instance;
        _ttlSeconds = (long)Math.Ceiling(options.LeaseTtl.TotalSeconds);
        Address = string.Join(',', options.Endpoints);
    }

    /// <inheritdoc/>
    public string Name => "etcd";

    /// <inheritdoc/>
    public string Address { get; }

    /// <inheritdoc/>
    public long InstanceId => _instanceId != 0 ? _instanceId : throw new InvalidOperationException("StartAsync has not been called");

    /// <inheritdoc/>
    public bool IsLeaseAlive => _leaseAlive;

    /// <summary>The lease the leased keys are bound to now (differs from <see cref="InstanceId"/> after a re-grant).</summary>
    internal long CurrentLeaseId => Interlocked.Read(ref _leaseId);

    private EtcdClient Client
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposeStarted) != 0, this);
            return _client ?? throw new InvalidOperationException("StartAsync has not been called");
        }
    }

    /// <inheritdoc/>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposeStarted) != 0, this);
        if (_client is not null)
        {
            return;
        }

        EtcdClient client = CreateClient();
        long start = _time.GetTimestamp();
        Exception? last = null;
        try
        {
            while (true)
            {
                TimeSpan remaining = _options.ConnectTimeout - _time.GetElapsedTime(start);
                if (remaining <= TimeSpan.Zero)
                {
                    throw Unreachable(last);
                }

                TimeSpan callTimeout = remaining < _options.CallTimeout ? remaining : _options.CallTimeout;
                try
                {
                    LeaseGrantResponse grant = await client.LeaseGrantAsync(
                        new LeaseGrantRequest { TTL = _ttlSeconds },
                        deadline: DateTime.UtcNow + callTimeout,
                        cancellationToken: cancellationToken).ConfigureAwait(false);
                    _instanceId = grant.ID;
                    _leaseId = grant.ID;
                    break;
                }
                catch (Exception e) when (IsCallFailure(e, cancellationToken))
                {
                    // Keep "Connection refused" rather than a later bare deadline.
                    last = last is RpcException { StatusCode: StatusCode.Unavailable } && e is not RpcException { StatusCode: StatusCode.Unavailable } ? last : e;
                }

                remaining = _options.ConnectTimeout - _time.GetElapsedTime(start);
                if (remaining > TimeSpan.Zero)
                {
                    await Task.Delay(remaining < MinBackoff ? remaining : MinBackoff, _time, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch
        {
            client.Dispose();
            throw;
        }

        _client = client;
        _leaseAlive = true;
        Log.Started(_logger, Address, _instanceId, _ttlSeconds);
        _keepAlive = Task.Run(() => KeepAliveLoopAsync(_keepAliveStop.Token), CancellationToken.None);
    }

    /// <inheritdoc/>
    public async Task PutAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(options);
        EtcdClient client = Client;
        var request = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value.Span) };
        if (!options.Leased)
        {
            await CallAsync(deadline => client.PutAsync(request, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            return;
        }

        await _leaseLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            request.Lease = LeaseForWrite();
            await CallAsync(deadline => client.PutAsync(request, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
            _leased[key] = new LeasedKey(request.Value, CreateOnly: false);
        }
        finally
        {
            _leaseLock.Release();
        }
    }

    /// <inheritdoc/>
    public async Task<bool> CreateAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(options);
        EtcdClient client = Client;
        var put = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value.Span) };
        if (!options.Leased)
        {
            return await CreateIfAbsentAsync(client, put, cancellationToken).ConfigureAwait(false);
        }

        await _leaseLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            put.Lease = LeaseForWrite();
            bool created = await CreateIfAbsentAsync(client, put, cancellationToken).ConfigureAwait(false);
            if (created)
            {
                _leased[key] = new LeasedKey(put.Value, CreateOnly: true);
            }

            return created;
        }
        finally
        {
            _leaseLock.Release();
        }
    }

    /// <inheritdoc/>
    public async Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        EtcdClient client = Client;
        await _leaseLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _leased.Remove(key);
            var request = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) };
            await CallAsync(deadline => client.DeleteAsync(request, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _leaseLock.Release();
        }
    }

    /// <inheritdoc/>
    public async Task<DiscoveryEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        EtcdClient client = Client;
        var request = new RangeRequest { Key = ByteString.CopyFromUtf8(key) };
        RangeResponse response = await CallAsync(deadline => client.GetAsync(request, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        return response.Kvs.Count == 0 ? null : ToEntry(response.Kvs[0]);
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<DiscoveryEntry>> GetPrefixAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        RangeResponse response = await ListAsync(Client, prefix, cancellationToken).ConfigureAwait(false);
        var entries = new DiscoveryEntry[response.Kvs.Count];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = ToEntry(response.Kvs[i]);
        }

        return entries;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Stops the keep-alive and revokes the lease with one call bounded by the call timeout; when etcd is
    /// unreachable the keys expire with the lease TTL instead. Idempotent. Keys written without a lease,
    /// reads and watches keep working until <see cref="DisposeAsync"/>.
    /// </remarks>
    public async Task RevokeAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _revoked, 1) != 0)
        {
            return;
        }

        _leaseAlive = false;
        await _keepAliveStop.CancelAsync().ConfigureAwait(false);
        await _keepAlive.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        EtcdClient? client = _client;
        if (client is null)
        {
            return;
        }

        long lease = Interlocked.Read(ref _leaseId);
        try
        {
            await client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, deadline: Deadline(), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // The lease had expired already.
        }
        catch (Exception e) when (IsCallFailure(e, cancellationToken))
        {
            Log.RevokeFailed(_logger, lease, Address, Describe(e), _ttlSeconds);
        }
    }

    /// <summary>Revokes the lease (see <see cref="RevokeAsync"/>), ends every watch and closes the connection. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposeStarted, 1) != 0)
        {
            return;
        }

        await RevokeAsync().ConfigureAwait(false);
        await _disposed.CancelAsync().ConfigureAwait(false);
        _client?.Dispose();
        _keepAliveStop.Dispose();
    }

    /// <summary>Test hook: stops refreshing the lease without revoking it, as if the process had frozen or died.</summary>
    internal void SuspendKeepAliveForTest() => _keepAliveSuspended = true;

    /// <summary>Test hook: undoes <see cref="SuspendKeepAliveForTest"/>.</summary>
    internal void ResumeKeepAliveForTest() => _keepAliveSuspended = false;

    private EtcdClient CreateClient()
    {
        bool tls = _options.Endpoints[0].StartsWith("https://", StringComparison.OrdinalIgnoreCase);
        return new EtcdClient(Address, configureChannelOptions: o =>
        {
            o.Credentials = tls ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure;

            // No gRPC-level retries (dotnet-etcd's default retries UNAVAILABLE 5 times with 1 s backoffs):
            // every loop here retries by itself under its own deadline, and a failure keeps its real reason
            // ("Connection refused") instead of turning into a bare DeadlineExceeded.
            o.ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } };

            // gRPC's default reconnect backoff grows to 120 s: after a long etcd outage the channel would
            // wait that long before trying again, far beyond the lease TTL.
            o.InitialReconnectBackoff = MinBackoff;
            o.MaxReconnectBackoff = TimeSpan.FromSeconds(1);
            if (o.HttpHandler is SocketsHttpHandler handler)
            {
                handler.ConnectTimeout = _options.ConnectTimeout;

                // Detect a silently dead connection (partition) under an open watch in ~15 s; only while a
                // call is active, because etcd answers pings on idle connections with GOAWAY.
                handler.KeepAlivePingDelay = TimeSpan.FromSeconds(10);
                handler.KeepAlivePingTimeout = TimeSpan.FromSeconds(5);
                handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests;
            }
        });
    }

    private async Task<RangeResponse> ListAsync(EtcdClient client, string prefix, CancellationToken cancellationToken)
    {
        (ByteString key, ByteString rangeEnd) = PrefixRange(prefix);
        var request = new RangeRequest { Key = key, RangeEnd = rangeEnd };
        return await CallAsync(deadline => client.GetAsync(request, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    private async Task<bool> CreateIfAbsentAsync(EtcdClient client, PutRequest put, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = put.Key, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = put });
        TxnResponse response = await CallAsync(deadline => client.TransactionAsync(txn, deadline: deadline, cancellationToken: cancellationToken), cancellationToken).ConfigureAwait(false);
        return response.Succeeded;
    }

    /// <summary>The lease for a leased write; called under the lease lock.</summary>
    private long LeaseForWrite()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _revoked) != 0, this);
        if (!_leaseAlive)
        {
            throw new DiscoveryUnavailableException($"etcd at {Address}: the lease is lost until etcd is reachable again (ETCD_ENDPOINTS); the leased key was not written");
        }

        return Interlocked.Read(ref _leaseId);
    }

    /// <summary>
    /// Runs one etcd call under one deadline of <see cref="EtcdDiscoveryOptions.CallTimeout"/>, retrying while
    /// etcd is unavailable (gRPC's own retries are off, so the reason of the last failure is kept), and turns
    /// gRPC failures into <see cref="DiscoveryUnavailableException"/>.
    /// </summary>
    private async Task<T> CallAsync<T>(Func<DateTime, Task<T>> call, CancellationToken cancellationToken)
    {
        DateTime deadline = Deadline();
        RpcException? unavailable = null;
        while (true)
        {
            try
            {
                return await call(deadline).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && DateTime.UtcNow + RetryDelay < deadline)
            {
                unavailable = e;
            }
            catch (Exception e) when (IsCallFailure(e, cancellationToken))
            {
                throw Unreachable(unavailable is not null && e is not RpcException { StatusCode: not StatusCode.DeadlineExceeded } ? unavailable : e);
            }

            await Task.Delay(RetryDelay, _time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A failed etcd call, as opposed to the caller cancelling: an <see cref="RpcException"/>, or the
    /// <see cref="OperationCanceledException"/> gRPC throws for a passed deadline (dotnet-etcd sets
    /// ThrowOperationCanceledOnCancellation).
    /// </summary>
    private static bool IsCallFailure(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && e is RpcException or OperationCanceledException;

    private DiscoveryUnavailableException Unreachable(Exception? cause) => cause is RpcException { StatusCode: not (StatusCode.Unavailable or StatusCode.DeadlineExceeded) }
        ? new($"etcd at {Address} failed: {Describe(cause)}", cause)
        : new($"etcd at {Address} is unreachable (ETCD_ENDPOINTS): {(cause is null ? "no answer" : Describe(cause))}", cause);

    private DateTime Deadline() => DateTime.UtcNow + _options.CallTimeout;

    private string Describe(Exception e) => e switch
    {
        RpcException { Status.DebugException: { } inner } rpc when !rpc.Status.Detail.Contains(inner.Message, StringComparison.Ordinal) =>
            $"{rpc.StatusCode}: {rpc.Status.Detail} ({inner.Message})",
        RpcException rpc => string.IsNullOrEmpty(rpc.Status.Detail) ? rpc.StatusCode.ToString() : $"{rpc.StatusCode}: {rpc.Status.Detail}",
        OperationCanceledException => $"no answer within {_options.CallTimeout.TotalSeconds:0.###} s",
        _ => e.Message,
    };

    private static DiscoveryEntry ToEntry(KeyValue kv) => new(kv.Key.ToStringUtf8(), kv.Value.Memory, kv.ModRevision);

    /// <summary>[prefix, range end) over UTF-8 bytes; the empty prefix means every key.</summary>
    private static (ByteString Key, ByteString RangeEnd) PrefixRange(string prefix)
    {
        if (prefix.Length == 0)
        {
            ByteString zero = ByteString.CopyFrom(0);
            return (zero, zero);
        }

        byte[] end = Encoding.UTF8.GetBytes(prefix);
        for (int i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xff)
            {
                end[i]++;
                return (ByteString.CopyFromUtf8(prefix), ByteString.CopyFrom(end, 0, i + 1));
            }
        }

        return (ByteString.CopyFromUtf8(prefix), ByteString.CopyFrom(0));
    }

    private sealed record LeasedKey(ByteString Value, bool CreateOnly);

    private static partial class Log
    {
        [LoggerMessage(EventId = 1100, Level = LogLevel.Information, Message = "etcd discovery at {Address}: lease {LeaseId:x}, TTL {TtlSeconds} s")]
        public static partial void Started(ILogger logger, string address, long leaseId, long ttlSeconds);

        [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "etcd lease {LeaseId:x} at {Address} is lost ({Reason}); leased keys are gone until etcd answers again")]
        public static partial void LeaseLost(ILogger logger, long leaseId, string address, string reason);

        [LoggerMessage(EventId = 1102, Level = LogLevel.Information, Message = "etcd registration restored at {Address}: new lease {LeaseId:x}, {KeyCount} leased keys written again")]
        public static partial void LeaseRestored(ILogger logger, long leaseId, string address, int keyCount);

        [LoggerMessage(EventId = 1103, Level = LogLevel.Information, Message = "etcd lease {LeaseId:x} at {Address} is alive again (etcd kept it); the leased keys are intact")]
        public static partial void LeaseRevived(ILogger logger, long leaseId, string address);

        [LoggerMessage(EventId = 1104, Level = LogLevel.Debug, Message = "etcd keep-alive of lease {LeaseId:x} failed: {Reason}")]
        public static partial void KeepAliveFailed(ILogger logger, long leaseId, string reason);

        [LoggerMessage(EventId = 1105, Level = LogLevel.Debug, Message = "etcd at {Address}: restoring the lease failed, retrying: {Reason}")]
        public static partial void RestoreFailed(ILogger logger, string address, string reason);

        [LoggerMessage(EventId = 1106, Level = LogLevel.Warning, Message = "leased key {Key} was created by another owner while the lease was lost; it is no longer registered by this process")]
        public static partial void LeasedKeyTaken(ILogger logger, string key);

        [LoggerMessage(EventId = 1107, Level = LogLevel.Warning, Message = "etcd watch of {Prefix} at {Address} broke ({Reason}); listing again")]
        public static partial void WatchLost(ILogger logger, string prefix, string address, string reason);

        [LoggerMessage(EventId = 1108, Level = LogLevel.Debug, Message = "etcd watch of {Prefix} at {Address}: listing failed, retrying: {Reason}")]
        public static partial void WatchRetry(ILogger logger, string prefix, string address, string reason);

        [LoggerMessage(EventId = 1109, Level = LogLevel.Information, Message = "etcd watch of {Prefix} resynchronised: {Puts} puts, {Deletes} deletes")]
        public static partial void WatchResynced(ILogger logger, string prefix, int puts, int deletes);

        [LoggerMessage(EventId = 1110, Level = LogLevel.Warning, Message = "could not revoke etcd lease {LeaseId:x} at {Address} ({Reason}); its keys expire within {TtlSeconds} s")]
        public static partial void RevokeFailed(ILogger logger, long leaseId, string address, string reason, long ttlSeconds);
    }
}
