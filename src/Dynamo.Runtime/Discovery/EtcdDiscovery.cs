using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
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
        var last = new StrongBox<Exception?>();
        try
        {
            // Bounded by a timer of our own, as every call (see CallAsync).
            _instanceId = await WithinAsync(ct => GrantFirstLeaseAsync(client, last, ct), _options.ConnectTimeout, cancellationToken).ConfigureAwait(false);
            _leaseId = _instanceId;
        }
        catch (Exception e)
        {
            client.Dispose();
            if (e is TimeoutException)
            {
                throw Unreachable(Volatile.Read(ref last.Value) ?? e);
            }

            throw;
        }

        _client = client;
        _leaseAlive = true;
        Log.Started(_logger, Address, _instanceId, _ttlSeconds);
        _keepAlive = Task.Run(() => KeepAliveLoopAsync(_keepAliveStop.Token), CancellationToken.None);
    }

    /// <summary>
    /// Checks the credentials (see <see cref="CheckAuthenticationAsync"/>), then grants the primary lease, retrying every
    /// 200 ms while etcd is unreachable; <paramref name="last"/> keeps the most telling failure. A refusal that only the
    /// settings can fix (credentials, permissions, TLS) ends the start at once.
    /// </summary>
    private async Task<long> GrantFirstLeaseAsync(EtcdClient client, StrongBox<Exception?> last, CancellationToken cancellationToken)
    {
        long start = _time.GetTimestamp();
        bool authenticated = false;
        while (true)
        {
            TimeSpan remaining = _options.ConnectTimeout - _time.GetElapsedTime(start);
            TimeSpan callTimeout = remaining < _options.CallTimeout ? remaining : _options.CallTimeout;
            DateTime deadline = DateTime.UtcNow + (callTimeout > TimeSpan.Zero ? callTimeout : MinBackoff);
            try
            {
                if (!authenticated)
                {
                    await CheckAuthenticationAsync(client, deadline, cancellationToken).ConfigureAwait(false);
                    authenticated = true;
                }

                LeaseGrantResponse grant = await client.LeaseGrantAsync(new LeaseGrantRequest { TTL = _ttlSeconds }, deadline: deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
                return grant.ID;
            }
            catch (Exception e) when (IsCallFailure(e, cancellationToken))
            {
                if (Refused(e) is { } refused)
                {
                    throw refused;
                }

                // Keep "Connection refused" rather than a later bare deadline.
                Exception? previous = Volatile.Read(ref last.Value);
                Volatile.Write(ref last.Value, previous is RpcException { StatusCode: StatusCode.Unavailable } && e is not RpcException { StatusCode: StatusCode.Unavailable } ? previous : e);
            }

            await Task.Delay(MinBackoff, _time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public async Task PutAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(options);
        EtcdClient client = Client;
        var request = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value.Span) };
        if (!options.Leased)
        {
            await CallAsync((deadline, ct) => client.PutAsync(request, deadline: deadline, cancellationToken: ct), cancellationToken).ConfigureAwait(false);
            return;
        }

        await CallAsync(
            async (deadline, ct) =>
            {
                await _leaseLock.WaitAsync(ct).ConfigureAwait(false);
                try
                {
                    request.Lease = LeaseForWrite();
                    PutResponse response = await client.PutAsync(request, deadline: deadline, cancellationToken: ct).ConfigureAwait(false);
                    _leased[key] = new LeasedKey(request.Value, CreateOnly: false);
                    return response;
                }
                finally
                {
                    _leaseLock.Release();
                }
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async Task<bool> CreateAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(options);
        EtcdClient client = Client;
        var put = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value.Span) };
        if (!options.Leased)
        {
            return await CallAsync((deadline, ct) => CreateIfAbsentAsync(client, put, deadline, ct), cancellationToken).ConfigureAwait(false);
        }

        return await CallAsync(
            async (deadline, ct) =>
            {
                await _leaseLock.WaitAsync(ct).ConfigureAwait(false);
                try
                {
                    put.Lease = LeaseForWrite();
                    bool created = await CreateIfAbsentAsync(client, put, deadline, ct).ConfigureAwait(false);
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
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        EtcdClient client = Client;
        var request = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) };
        await CallAsync(
            async (deadline, ct) =>
            {
                await _leaseLock.WaitAsync(ct).ConfigureAwait(false);
                try
                {
                    _leased.Remove(key);
                    return await client.DeleteAsync(request, deadline: deadline, cancellationToken: ct).ConfigureAwait(false);
                }
                finally
                {
                    _leaseLock.Release();
                }
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async Task<DiscoveryEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        EtcdClient client = Client;
        var request = new RangeRequest { Key = ByteString.CopyFromUtf8(key) };
        RangeResponse response = await CallAsync((deadline, ct) => client.GetAsync(request, deadline: deadline, cancellationToken: ct), cancellationToken).ConfigureAwait(false);
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
            await CallAsync(
                async (deadline, ct) =>
                {
                    try
                    {
                        await client.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, deadline: deadline, cancellationToken: ct).ConfigureAwait(false);
                    }
                    catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                    {
                        // The lease had expired already.
                    }

                    return true;
                },
                cancellationToken,
                retryUnavailable: false).ConfigureAwait(false);
        }
        catch (DiscoveryUnavailableException e)
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
        X509Certificate2Collection trusted = _options.Security.TrustedCertificates();
        X509Certificate2? clientCertificate = _options.Security.ClientCertificate();
        string[] hosts = [.. _options.Endpoints.Select(e => new Uri(e).IdnHost)];
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
                if (tls)
                {
                    handler.SslOptions = new SslClientAuthenticationOptions
                    {
                        RemoteCertificateValidationCallback = (_, certificate, _, errors) => IsTrusted(certificate, errors, trusted, hosts),
                        ClientCertificates = clientCertificate is null ? null : [clientCertificate],
                    };
                }
            }
        });
    }

    private async Task<RangeResponse> ListAsync(EtcdClient client, string prefix, CancellationToken cancellationToken)
    {
        (ByteString key, ByteString rangeEnd) = PrefixRange(prefix);
        var request = new RangeRequest { Key = key, RangeEnd = rangeEnd };
        return await CallAsync((deadline, ct) => client.GetAsync(request, deadline: deadline, cancellationToken: ct), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One transaction writing <paramref name="put"/> if its key does not exist (create revision 0).</summary>
    private static async Task<bool> CreateIfAbsentAsync(EtcdClient client, PutRequest put, DateTime deadline, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = put.Key, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = put });
        TxnResponse response = await client.TransactionAsync(txn, deadline: deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
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
    /// Runs one etcd operation within <see cref="EtcdDiscoveryOptions.CallTimeout"/>: <paramref name="call"/> gets
    /// the gRPC deadline and a token cancelled when the time is up; while etcd is unavailable it is retried every
    /// 100 ms (gRPC's own retries are off, so the reason of the last failure is kept). gRPC failures and the
    /// timeout become <see cref="DiscoveryUnavailableException"/>.
    /// </summary>
    /// <remarks>
    /// The time limit is enforced here (<see cref="WithinAsync"/>), not left to the gRPC deadline: that one is a
    /// thread-pool timer, and its expiry reaches the caller through more pool work items (the HTTP/2 stream's
    /// cancellation, gRPC's response task, dotnet-etcd's async wrapper, the retry loop). With the pool saturated
    /// (threads blocked elsewhere in the process) a call to a frozen etcd returned after 10-20 s instead of 2 s.
    /// The wait for the lease lock (held while the lease is being restored) counts against the same limit.
    /// </remarks>
    private async Task<T> CallAsync<T>(Func<DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken, bool retryUnavailable = true)
    {
        DateTime deadline = Deadline();
        var lastUnavailable = new StrongBox<RpcException?>();
        try
        {
            return await WithinAsync(ct => AttemptAsync(call, deadline, retryUnavailable, lastUnavailable, ct), _options.CallTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            throw Unreachable((Exception?)Volatile.Read(ref lastUnavailable.Value) ?? e);
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> and returns its result, or throws <see cref="TimeoutException"/> once
    /// <paramref name="limit"/> (real time) has passed. The limit is a <see cref="DedicatedTimer"/>: its expiry
    /// completes this task from a thread of its own, so it holds however busy the thread pool is. The token
    /// <paramref name="work"/> gets is cancelled then (or with <paramref name="cancellationToken"/>); its late
    /// outcome is observed and dropped.
    /// </summary>
    private static async Task<T> WithinAsync<T>(Func<CancellationToken, Task<T>> work, TimeSpan limit, CancellationToken cancellationToken)
    {
        var abandon = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<T> running = work(abandon.Token);

        // Completed on the timer's thread with synchronous continuations: the code after the await below, and
        // the caller's own continuation when it has no context to return to, run there, not on the pool.
        var expired = new TaskCompletionSource();
        try
        {
            using (DedicatedTimer.Start(limit, () => expired.TrySetResult()))
            using (cancellationToken.UnsafeRegister(static s => ((TaskCompletionSource)s!).TrySetResult(), expired))
            {
                if (await Task.WhenAny(running, expired.Task).ConfigureAwait(false) == running)
                {
                    return await running.ConfigureAwait(false);
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException($"no answer within {limit.TotalSeconds:0.###} s");
        }
        finally
        {
            if (running.IsCompleted)
            {
                abandon.Dispose();
            }
            else
            {
                abandon.Cancel();
                _ = running.ContinueWith(
                    static (t, state) =>
                    {
                        _ = t.Exception;
                        ((CancellationTokenSource)state!).Dispose();
                    },
                    abandon,
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
        }
    }

    private async Task<T> AttemptAsync<T>(
        Func<DateTime, CancellationToken, Task<T>> call, DateTime deadline, bool retryUnavailable, StrongBox<RpcException?> lastUnavailable, CancellationToken cancellationToken)
    {
        bool retriedToken = false;
        while (true)
        {
            try
            {
                return await call(deadline, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException e) when (retryUnavailable && e.StatusCode == StatusCode.Unavailable && DateTime.UtcNow + RetryDelay < deadline
                && EtcdRefusals.Classify(e) != EtcdRefusal.TlsHandshake)
            {
                Volatile.Write(ref lastUnavailable.Value, e);
            }
            catch (RpcException e) when (!retriedToken && EtcdRefusals.Classify(e) == EtcdRefusal.TokenInvalid && DateTime.UtcNow + RetryDelay < deadline)
            {
                // etcd forgot the token (restarted, or its TTL passed); the handler dropped it and fetches a new one.
                retriedToken = true;
            }
            catch (Exception e) when (IsCallFailure(e, cancellationToken))
            {
                RpcException? unavailable = Volatile.Read(ref lastUnavailable.Value);
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

    private DiscoveryUnavailableException Unreachable(Exception? cause) => Refused(cause) ?? (cause is RpcException { StatusCode: not (StatusCode.Unavailable or StatusCode.DeadlineExceeded) }
        ? new($"etcd at {Address} failed: {Describe(cause)}", cause)
        : new($"etcd at {Address} is unreachable (ETCD_ENDPOINTS): {(cause is null ? "no answer" : Describe(cause))}", cause) { IsUnreachable = true });

    private DateTime Deadline() => DateTime.UtcNow + _options.CallTimeout;

    private string Describe(Exception e) => e switch
    {
        RpcException { Status.DebugException: { } inner } rpc when !rpc.Status.Detail.Contains(inner.Message, StringComparison.Ordinal) =>
            $"{rpc.StatusCode}: {rpc.Status.Detail} ({inner.Message})",
        RpcException rpc => string.IsNullOrEmpty(rpc.Status.Detail) ? rpc.StatusCode.ToString() : $"{rpc.StatusCode}: {rpc.Status.Detail}",
        OperationCanceledException or TimeoutException => $"no answer within {_options.CallTimeout.TotalSeconds:0.###} s",
        DiscoveryUnavailableException { InnerException: { } inner } => Describe(inner),
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

        [LoggerMessage(EventId = 1111, Level = LogLevel.Information, Message = "etcd at {Address} has authentication off; the credentials of {Variable} are not used")]
        public static partial void AuthenticationOff(ILogger logger, string address, string variable);
    }
}
