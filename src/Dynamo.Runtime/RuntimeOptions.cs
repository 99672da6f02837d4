using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Runtime;

/// <summary>
/// Where etcd and NATS are, read from NATS_SERVER and ETCD_ENDPOINTS exactly as the guides set them
/// (<c>nats://host:4222</c>; <c>host:2379</c> or <c>http://host:2379</c>, comma-separated), and how to
/// authenticate to them (NATS_AUTH_*, NATS_TLS_*, ETCD_AUTH_*: <see cref="NatsSecurity"/>, <see cref="EtcdSecurity"/>).
/// </summary>
public sealed record RuntimeOptions
{
    /// <summary>The variable naming the NATS server(s).</summary>
    public const string NatsServerVariable = "NATS_SERVER";

    /// <summary>The variable naming the etcd endpoint(s).</summary>
    public const string EtcdEndpointsVariable = "ETCD_ENDPOINTS";

    /// <summary>Where the separate frontend and worker commands look when the variables are unset, as the original does.</summary>
    public const string DefaultNatsServer = "nats://localhost:4222";

    /// <summary>See <see cref="DefaultNatsServer"/>.</summary>
    public const string DefaultEtcdEndpoints = "http://localhost:2379";

    /// <summary>The NATS URL(s), normalised, without user info (that is in <see cref="Nats"/>); null in single-machine mode.</summary>
    public string? NatsServer { get; init; }

    /// <summary>NATS credentials and TLS.</summary>
    public NatsSecurity Nats { get; init; } = NatsSecurity.None;

    /// <summary>etcd credentials and TLS.</summary>
    public EtcdSecurity Etcd { get; init; } = EtcdSecurity.None;

    /// <summary>The etcd endpoints, normalised; null in single-machine mode.</summary>
    public IReadOnlyList<string>? EtcdEndpoints { get; init; }

    /// <summary>Lease TTL of this process's registrations (default 10 s).</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long to wait for etcd and NATS at startup before failing with a message naming them.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Logs of the runtime's clients (lease loss, reconnects).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>True when etcd and NATS are configured (otherwise everything runs in one process).</summary>
    public bool IsDistributed => NatsServer is not null && EtcdEndpoints is not null;

    /// <summary>
    /// Reads the variables. With <paramref name="defaultToLocalhost"/> (the separate frontend and worker
    /// commands), an unset variable means localhost; without it (<c>dynamo run</c>), both unset means
    /// single-machine mode and exactly one set is an error. A malformed value is an
    /// <see cref="ArgumentException"/> naming the variable and what was expected. The credentials and TLS
    /// variables are read with them (their files must exist); a bare ETCD_ENDPOINTS item (and the default
    /// localhost) gets https when ETCD_AUTH_CA or a client certificate is set.
    /// </summary>
    public static RuntimeOptions FromEnvironment(bool defaultToLocalhost, Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        string? nats = Blank(getVariable(NatsServerVariable));
        string? etcd = Blank(getVariable(EtcdEndpointsVariable));
        if (!defaultToLocalhost && (nats is null) != (etcd is null))
        {
            throw new ArgumentException(nats is null
                ? $"{EtcdEndpointsVariable} is set but {NatsServerVariable} is not: set both to use etcd and NATS, or neither to run everything in this process"
                : $"{NatsServerVariable} is set but {EtcdEndpointsVariable} is not: set both to use etcd and NATS, or neither to run everything in this process");
        }

        if (nats is null && etcd is null && !defaultToLocalhost)
        {
            return new RuntimeOptions();
        }

        (string natsUrl, string? userInfo) = NatsPlaneOptions.SplitUserInfo(nats ?? DefaultNatsServer);
        EtcdSecurity etcdSecurity = EtcdSecurity.FromEnvironment(getVariable);
        IReadOnlyList<string> endpoints = etcdSecurity.HasTls
            ? EtcdDiscoveryOptions.ParseEndpoints(etcd ?? "localhost:2379", defaultScheme: "https")
            : EtcdDiscoveryOptions.ParseEndpoints(etcd ?? DefaultEtcdEndpoints);
        if (etcdSecurity.HasTls && endpoints[0].StartsWith("http://", StringComparison.Ordinal))
        {
            throw new ArgumentException($"{EtcdSecurity.CaVariable} or {EtcdSecurity.ClientCertVariable} is set but {EtcdEndpointsVariable} names http:// endpoints; use https://host:2379 for TLS");
        }

        return new RuntimeOptions
        {
            NatsServer = natsUrl,
            EtcdEndpoints = endpoints,
            Nats = NatsSecurity.FromEnvironment(getVariable, userInfo),
            Etcd = etcdSecurity,
        };
    }

    private static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
