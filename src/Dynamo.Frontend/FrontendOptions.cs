using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;

namespace Dynamo.Frontend;

/// <summary>Settings of <see cref="FrontendServer"/>; bound from <c>dynamo frontend</c> flags, validated at startup.</summary>
public sealed record FrontendOptions
{
    /// <summary>The defaults (port 8000 on 127.0.0.1 only, namespace "dynamo", round-robin).</summary>
    public static FrontendOptions Default { get; } = new();

    /// <summary>
    /// Interface to listen on (--http-host): an IP address, "localhost", or "0.0.0.0" for all. 127.0.0.1 by default:
    /// nothing listens beyond this host unless asked; a deployment across hosts says 0.0.0.0 (or its address).
    /// </summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>HTTP port (--http-port); 0 picks a free port (see <see cref="FrontendServer.BaseAddress"/>).</summary>
    public int HttpPort { get; init; } = 8000;

    /// <summary>Largest accepted request body (--max-request-body-bytes); larger ones are answered 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 16L << 20;

    /// <summary>Largest total size of a request's header fields (--max-request-header-bytes); Kestrel answers 431 above it.</summary>
    public int MaxRequestHeaderBytes { get; init; } = 32 << 10;

    /// <summary>Most header fields in one request (--max-request-headers); Kestrel answers 431 above it.</summary>
    public int MaxRequestHeaderCount { get; init; } = 100;

    /// <summary>Longest request line, method + target + version (--max-request-line-bytes); Kestrel answers 414 above it.</summary>
    public int MaxRequestLineBytes { get; init; } = 8 << 10;

    /// <summary>How long a client may take to send a request's headers (--request-headers-timeout); then the connection is closed.</summary>
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Slowest accepted upload of a request body, bytes per second averaged after <see cref="MinRequestBodyRateGracePeriod"/>
    /// (--min-request-body-rate; 0 turns the check off): a slower client gets 408 and its connection closed.
    /// </summary>
    public double MinRequestBodyBytesPerSecond { get; init; } = 240;

    /// <summary>How long a body upload may stay under <see cref="MinRequestBodyBytesPerSecond"/> before it is cut (--min-request-body-rate-grace).</summary>
    public TimeSpan MinRequestBodyRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Keys clients must send as <c>Authorization: Bearer KEY</c> (--api-key, and DYNAMO_API_KEY in the CLI); with
    /// <see cref="ApiKeyFile"/> too, any key of either is accepted. None (and no file): no key is required.
    /// </summary>
    public IReadOnlyList<string> ApiKeys { get; init; } = [];

    /// <summary>A file with one accepted key per line (--api-key-file; blank lines and lines starting with # are skipped).</summary>
    public string? ApiKeyFile { get; init; }

    /// <summary>With API keys: /metrics requires one too (--metrics-require-api-key); /health and /live never do.</summary>
    public bool MetricsRequireApiKey { get; init; }

    /// <summary>PEM certificate (chain) to serve HTTPS with (--tls-cert-file; with <see cref="TlsKeyFile"/>); none: plain HTTP.</summary>
    public string? TlsCertificateFile { get; init; }

    /// <summary>PEM private key of <see cref="TlsCertificateFile"/> (--tls-key-file).</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>How often a streaming response sends an SSE comment (": keep-alive") while no token arrives.</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// On shutdown (SIGTERM), how long in-flight requests may still finish before their streams are ended with a
    /// <c>shutting_down</c> error event (--shutdown-drain-timeout; 0 ends them at once).
    /// </summary>
    public TimeSpan ShutdownDrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Serve the web page at / (a chat playground and live worker status) and the JSON it polls,
    /// GET /v1/dynamo/status (on by default; --no-web-ui turns both off: 404 as any unknown path).
    /// </summary>
    public bool WebUi { get; init; } = true;

    /// <summary>With no logger factory given: log JSON lines instead of plain text.</summary>
    public bool JsonLogs { get; init; }

    /// <summary>
    /// The processing pipeline the frontend runs itself while no Processor component serves its namespace:
    /// namespace, router mode, KV router settings, tokenizer cache.
    /// </summary>
    public ProcessorOptions Processing { get; init; } = ProcessorOptions.Default;

    /// <summary>The overload limits: slots, the admission queue, per-client and per-model limits, request deadlines.</summary>
    public AdmissionOptions Admission { get; init; } = AdmissionOptions.Default;

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public FrontendOptions Validate()
    {
        static void Check(bool ok, string flag, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{flag}: {message}", flag);
            }
        }

        Check(!string.IsNullOrWhiteSpace(Host), "--host", "must name an interface (0.0.0.0 for all)");
        Check(HttpPort is >= 0 and <= 65535, "--http-port", $"{HttpPort} is not a port (0..65535, 0 = any free port)");
        Check(MaxRequestBodyBytes >= 1024, "--max-request-body-bytes", $"{MaxRequestBodyBytes} must be at least 1024");
        Check(MaxRequestHeaderBytes >= 1024, "--max-request-header-bytes", $"{MaxRequestHeaderBytes} must be at least 1024");
        Check(MaxRequestHeaderCount >= 8, "--max-request-headers", $"{MaxRequestHeaderCount} must be at least 8");
        Check(MaxRequestLineBytes >= 256, "--max-request-line-bytes", $"{MaxRequestLineBytes} must be at least 256");
        Check(RequestHeadersTimeout >= TimeSpan.FromSeconds(1), "--request-headers-timeout", $"{RequestHeadersTimeout.TotalSeconds} s must be at least 1 s");
        Check(double.IsFinite(MinRequestBodyBytesPerSecond) && MinRequestBodyBytesPerSecond >= 0, "--min-request-body-rate", $"{MinRequestBodyBytesPerSecond} must be a finite number of bytes per second, 0 (off) or more");
        Check(MinRequestBodyRateGracePeriod > TimeSpan.FromSeconds(1), "--min-request-body-rate-grace", $"{MinRequestBodyRateGracePeriod.TotalSeconds} s must be more than 1 s");
        Check(ApiKeys is not null, "--api-key", "must not be null");
        foreach (string key in ApiKeys!)
        {
            Check(ApiKeyAuthenticator.IsWellFormed(key), "--api-key", "a key must be 1 to 4096 visible ASCII characters (no spaces)");
        }

        if (ApiKeyFile is not null)
        {
            _ = ApiKeyAuthenticator.ReadFile(ApiKeyFile);
        }

        Check(!MetricsRequireApiKey || ApiKeys.Count > 0 || ApiKeyFile is not null, "--metrics-require-api-key", "needs --api-key or --api-key-file");
        ServerCertificate.Load(TlsCertificateFile, TlsKeyFile)?.Dispose();
        Check(KeepAliveInterval > TimeSpan.Zero, "--keep-alive-interval", "must be positive");
        Check(ShutdownDrainTimeout >= TimeSpan.Zero && ShutdownDrainTimeout <= TimeSpan.FromHours(1), "--shutdown-drain-timeout", $"{ShutdownDrainTimeout.TotalSeconds} s is outside 0..3600 s");
        Processing.Validate();
        Admission.Validate();
        return this;
    }
}
