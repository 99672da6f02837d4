using Microsoft.Extensions.Logging;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// How a process talks to NATS: the connection (one per process, shared by <see cref="NatsRequestPlane"/>
/// and <c>NatsEventPlane</c>) and the request-plane flow control. Bound once from NATS_SERVER and flags;
/// tests write <c>Default with { ... }</c>.
/// </summary>
public sealed record NatsPlaneOptions
{
    /// <summary>The defaults: a local server, dead links noticed in about 4-6 s.</summary>
    public static NatsPlaneOptions Default { get; } = new();

    /// <summary>Server URL(s), comma-separated, as accepted by <see cref="ParseUrl"/>.</summary>
    public string Url { get; init; } = "nats://127.0.0.1:4222";

    /// <summary>Longest wait for the first connection (all seed URLs together) before <see cref="NatsUnavailableException"/>.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Client PING period; with <see cref="MaxPingsOut"/> it bounds how long a dead link goes unnoticed.</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Unanswered PINGs before the client drops the connection and reconnects.</summary>
    public int MaxPingsOut { get; init; } = 2;

    /// <summary>First wait between reconnect attempts (doubles up to <see cref="ReconnectWaitMax"/>).</summary>
    public TimeSpan ReconnectWaitMin { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest wait between reconnect attempts.</summary>
    public TimeSpan ReconnectWaitMax { get; init; } = TimeSpan.FromMilliseconds(1000);

    /// <summary>Connection name shown by the server's monitoring endpoints.</summary>
    public string ClientName { get; init; } = "dynamo";

    /// <summary>
    /// Request plane, serving side: data frames a server sends ahead of the client's acknowledgements
    /// (the client acknowledges every quarter window). Announced in the accept frame.
    /// </summary>
    public int ResponseWindow { get; init; } = 128;

    /// <summary>Request plane, serving side: a full window without an acknowledgement for this long cancels the handler (the client is gone).</summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Request plane, both sides: a server sends a heartbeat frame when a request has sent nothing for this long;
    /// a client sends a keepalive (an <c>ack</c>) on each open stream at this interval and announces it in the
    /// request (<c>Dyn-Keepalive</c>), so that a server cancels a request whose client stays silent four times as long.
    /// </summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Request plane, calling side: while the NATS connection is down, a new request waits this long for it to
    /// come back, and a stream in flight waits this long for its own connection, before failing with
    /// <see cref="RequestErrorKind.Unavailable"/> / <c>request_plane_unavailable</c> (a frontend answers 503).
    /// A NATS restart of a few seconds fits in it.
    /// </summary>
    public TimeSpan UnavailableTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Event plane: messages buffered per subscription; beyond it the oldest are dropped and counted.</summary>
    public int EventBufferCapacity { get; init; } = 4096;

    /// <summary>Where the planes log connection changes and failed requests; null for none.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Credentials and TLS (NATS_AUTH_*, NATS_TLS_*); <see cref="NatsSecurity.None"/> by default.</summary>
    public NatsSecurity Security { get; init; } = NatsSecurity.None;

    /// <summary>
    /// Parses a NATS_SERVER value: <c>nats://host:4222</c>, <c>host:4222</c>, <c>host</c> (port 4222),
    /// <c>tls://host:4222</c> (also <c>ws://</c>, <c>wss://</c>, and <c>user:pass@</c>), or a comma-separated
    /// list of them. Returns the normalized list (<c>nats://host:4222,...</c>).
    /// </summary>
    /// <exception cref="ArgumentException">An item is empty or malformed; the message names NATS_SERVER and the item.</exception>
    public static string ParseUrl(string value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException("NATS_SERVER is empty; expected nats://host:4222 (or a comma-separated list)", nameof(value));
        }

        string[] items = value.Split(',');
        var normalized = new string[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            normalized[i] = ParseOne(items[i].Trim(), value);
        }

        return string.Join(',', normalized);
    }

    /// <summary>
    /// Takes the <c>user:password@</c> (or <c>token@</c>) out of a NATS_SERVER value, so that the address can be
    /// shown and logged: returns the normalized URL(s) without it and the user info (null when there is none).
    /// Several items may carry user info only if it is the same.
    /// </summary>
    /// <exception cref="ArgumentException">The value is malformed, or its items carry different user info.</exception>
    public static (string Url, string? UserInfo) SplitUserInfo(string value)
    {
        string[] items = ParseUrl(value).Split(',');
        string? userInfo = null;
        for (int i = 0; i < items.Length; i++)
        {
            var uri = new Uri(items[i]);
            if (uri.UserInfo.Length == 0)
            {
                continue;
            }

            if (userInfo is not null && userInfo != uri.UserInfo)
            {
                throw new ArgumentException("NATS_SERVER: its addresses carry different user:password@ parts; give the credentials once (NATS_AUTH_USERNAME and NATS_AUTH_PASSWORD)", nameof(value));
            }

            userInfo = uri.UserInfo;
            items[i] = items[i].Replace(uri.UserInfo + "@", "", StringComparison.Ordinal);
        }

        return (string.Join(',', items), userInfo);
    }

    /// <summary>The NATS client options these settings stand for (user info in <see cref="Url"/> becomes the credentials).</summary>
    public NatsOpts ToNatsOpts() => Resolve().Opts;

    /// <summary>The client options, and the security they use: <see cref="Security"/>, or the credentials of the URL's user info.</summary>
    internal (NatsOpts Opts, NatsSecurity Security) Resolve()
    {
        (string url, string? userInfo) = SplitUserInfo(Url);
        NatsSecurity security = userInfo is null ? Security
            : Security.HasCredentials ? throw new ArgumentException("NATS credentials are given twice: in the NATS server URL and in NatsPlaneOptions.Security")
            : Security.WithUserInfo(userInfo);
        return (ToNatsOpts(url, security), security);
    }

    private NatsOpts ToNatsOpts(string url, NatsSecurity security) => NatsOpts.Default with
    {
        Url = url,
        AuthOpts = security.ToAuthOpts(),
        TlsOpts = security.ToTlsOpts(),
        Name = ClientName,
        ConnectTimeout = ConnectTimeout,
        PingInterval = PingInterval,
        MaxPingOut = MaxPingsOut,
        ReconnectWaitMin = ReconnectWaitMin,
        ReconnectWaitMax = ReconnectWaitMax,
        ReconnectJitter = TimeSpan.FromMilliseconds(50),
        RetryOnInitialConnect = false,
        MaxReconnectRetry = -1,
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting when one is out of range.</summary>
    public void Validate()
    {
        ParseUrl(Url);
        Positive(ConnectTimeout, nameof(ConnectTimeout));
        Positive(PingInterval, nameof(PingInterval));
        Positive(ReconnectWaitMin, nameof(ReconnectWaitMin));
        Positive(ReconnectWaitMax, nameof(ReconnectWaitMax));
        Positive(AckTimeout, nameof(AckTimeout));
        Positive(HeartbeatInterval, nameof(HeartbeatInterval));
        Positive(UnavailableTimeout, nameof(UnavailableTimeout));
        if (MaxPingsOut < 1)
        {
            throw new ArgumentException($"{nameof(MaxPingsOut)} must be at least 1 (got {MaxPingsOut})");
        }

        if (ResponseWindow < 1)
        {
            throw new ArgumentException($"{nameof(ResponseWindow)} must be at least 1 (got {ResponseWindow})");
        }

        if (EventBufferCapacity < 1)
        {
            throw new ArgumentException($"{nameof(EventBufferCapacity)} must be at least 1 (got {EventBufferCapacity})");
        }
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{name} must be positive (got {value})");
        }
    }

    private static string ParseOne(string item, string whole)
    {
        if (item.Length == 0)
        {
            throw new ArgumentException($"NATS_SERVER '{Redacted(whole)}' has an empty item; expected nats://host:4222[,nats://host2:4222]", nameof(whole));
        }

        string withScheme = item.Contains("://", StringComparison.Ordinal) ? item : "nats://" + item;
        string shown = Redacted(item);
        if (item.Any(char.IsWhiteSpace)
            || !Uri.TryCreate(withScheme, UriKind.Absolute, out Uri? uri)
            || uri.Scheme is not ("nats" or "tls" or "ws" or "wss")
            || uri.Host.Length == 0
            || uri.AbsolutePath is not ("" or "/")
            || uri.Query.Length != 0
            || uri.Fragment.Length != 0)
        {
            throw new ArgumentException(
                $"NATS_SERVER item '{shown}' is not a NATS server address; expected nats://host:4222, host:4222, or tls://host:4222 (comma-separated for a cluster)",
                nameof(whole));
        }

        int port = uri.IsDefaultPort || uri.Port <= 0 ? DefaultPort(uri.Scheme) : uri.Port;
        string userInfo = uri.UserInfo.Length == 0 ? "" : uri.UserInfo + "@";
        return $"{uri.Scheme}://{userInfo}{uri.Host}:{port}";
    }

    /// <summary><paramref name="value"/> with what stands between a scheme (or the start) and an <c>@</c> shown as ***: user info holds secrets.</summary>
    internal static string Redacted(string value) => string.Join(',', value.Split(',').Select(item =>
    {
        int at = item.LastIndexOf('@');
        if (at < 0)
        {
            return item;
        }

        int scheme = item.IndexOf("://", StringComparison.Ordinal);
        int start = scheme >= 0 && scheme < at ? scheme + 3 : 0;
        return string.Concat(item.AsSpan(0, start), "***", item.AsSpan(at));
    }));

    private static int DefaultPort(string scheme) => scheme switch
    {
        "ws" => 80,
        "wss" => 443,
        _ => 4222,
    };
}
