using System.CommandLine;
using Dynamo.Frontend;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The HTTP server's flags (request limits, slow-client timeouts, API keys, TLS), part of <see cref="FrontendFlags"/>,
/// bound over a <see cref="FrontendOptions"/>; the defaults are the record's.
/// </summary>
internal sealed class HttpServerFlags
{
    /// <summary>An API key read from the environment, added to --api-key's (one key).</summary>
    public const string ApiKeyVariable = "DYNAMO_API_KEY";

    private static readonly FrontendOptions D = FrontendOptions.Default;

    private readonly Option<long> _maxBody = new("--max-request-body-bytes") { Description = "Largest request body; larger ones get 413", DefaultValueFactory = _ => D.MaxRequestBodyBytes };
    private readonly Option<int> _maxHeaderBytes = new("--max-request-header-bytes") { Description = "Largest total size of a request's headers; larger get 431", DefaultValueFactory = _ => D.MaxRequestHeaderBytes };
    private readonly Option<int> _maxHeaders = new("--max-request-headers") { Description = "Most header fields in a request; more get 431", DefaultValueFactory = _ => D.MaxRequestHeaderCount };
    private readonly Option<int> _maxLine = new("--max-request-line-bytes") { Description = "Longest request line (method, URL, version); longer get 414", DefaultValueFactory = _ => D.MaxRequestLineBytes };
    private readonly Option<double> _headersTimeout = new("--request-headers-timeout") { Description = "Seconds a client may take to send its headers before the connection is closed", DefaultValueFactory = _ => D.RequestHeadersTimeout.TotalSeconds };
    private readonly Option<double> _minBodyRate = new("--min-request-body-rate") { Description = "Slowest accepted body upload, bytes/s (0 = no check); slower clients get 408", DefaultValueFactory = _ => D.MinRequestBodyBytesPerSecond };
    private readonly Option<double> _minBodyRateGrace = new("--min-request-body-rate-grace") { Description = "Seconds a body upload may stay under --min-request-body-rate", DefaultValueFactory = _ => D.MinRequestBodyRateGracePeriod.TotalSeconds };
    private readonly Option<string[]> _apiKey = new("--api-key") { Description = $"Require 'Authorization: Bearer KEY' with this key (repeatable; also ${ApiKeyVariable})" };
    private readonly Option<string?> _apiKeyFile = new("--api-key-file") { Description = "Require a key from this file (one per line, # comments)" };
    private readonly Option<bool> _metricsKey = new("--metrics-require-api-key") { Description = "With API keys: /metrics needs one too (/health and /live stay open)" };
    private readonly Option<string?> _tlsCert = new("--tls-cert-file") { Description = "Serve HTTPS with this PEM certificate (chain); with --tls-key-file" };
    private readonly Option<string?> _tlsKey = new("--tls-key-file") { Description = "The PEM private key of --tls-cert-file" };
    private readonly Option<bool> _noWebUi = new("--no-web-ui") { Description = "Serve no web page at / (chat playground, worker status) and no /v1/dynamo/status" };

    public static HttpServerFlags AddTo(Command command)
    {
        var flags = new HttpServerFlags();
        foreach (Option o in new Option[] { flags._maxBody, flags._maxHeaderBytes, flags._maxHeaders, flags._maxLine, flags._headersTimeout, flags._minBodyRate, flags._minBodyRateGrace, flags._apiKey, flags._apiKeyFile, flags._metricsKey, flags._tlsCert, flags._tlsKey, flags._noWebUi })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary>The flags' values (and <see cref="ApiKeyVariable"/>) over <paramref name="options"/>.</summary>
    public FrontendOptions Read(ParseResult parse, FrontendOptions options) => options with
    {
        MaxRequestBodyBytes = parse.GetValue(_maxBody),
        MaxRequestHeaderBytes = parse.GetValue(_maxHeaderBytes),
        MaxRequestHeaderCount = parse.GetValue(_maxHeaders),
        MaxRequestLineBytes = parse.GetValue(_maxLine),
        RequestHeadersTimeout = FrontendFlags.Seconds(parse.GetValue(_headersTimeout)),
        MinRequestBodyBytesPerSecond = parse.GetValue(_minBodyRate),
        MinRequestBodyRateGracePeriod = FrontendFlags.Seconds(parse.GetValue(_minBodyRateGrace)),
        ApiKeys = WithEnvironmentKey(parse.GetValue(_apiKey)),
        ApiKeyFile = parse.GetValue(_apiKeyFile),
        MetricsRequireApiKey = parse.GetValue(_metricsKey),
        TlsCertificateFile = parse.GetValue(_tlsCert),
        TlsKeyFile = parse.GetValue(_tlsKey),
        WebUi = !parse.GetValue(_noWebUi),
    };

    /// <summary><paramref name="given"/> plus the key in <see cref="ApiKeyVariable"/>, if set; the default (empty) list when neither has one.</summary>
    public static IReadOnlyList<string> WithEnvironmentKey(IEnumerable<string>? given)
    {
        string[] keys = [.. given ?? [], .. Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } key ? [key.Trim()] : Array.Empty<string>()];
        return keys.Length > 0 ? keys : FrontendOptions.Default.ApiKeys;
    }
}
