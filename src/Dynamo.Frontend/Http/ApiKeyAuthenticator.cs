using System.Security.Cryptography;
using System.Text;
using Dynamo.Llm.Protocols.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Frontend.Http;

/// <summary>
/// The frontend's optional API keys (<see cref="FrontendOptions.ApiKeys"/>, <see cref="FrontendOptions.ApiKeyFile"/>):
/// a middleware that answers 401 with an OpenAI error unless the request carries one of them as
/// <c>Authorization: Bearer KEY</c>. /health, /live and the web page's HTML at / (no data: its requests carry the key
/// the user types in) are always open, /metrics unless
/// <see cref="FrontendOptions.MetricsRequireApiKey"/>. Only SHA-256 digests of the keys are kept, and a
/// candidate's digest is compared with every one in constant time, so neither a key's content nor its
/// length shows in the response time.
/// </summary>
internal sealed class ApiKeyAuthenticator
{
    /// <summary>The longest accepted key.</summary>
    public const int MaxKeyLength = 4096;

    private readonly byte[][] _digests;
    private readonly bool _metricsOpen;

    private ApiKeyAuthenticator(IEnumerable<string> keys, bool metricsOpen)
    {
        _digests = [.. keys.Distinct(StringComparer.Ordinal).Select(k => SHA256.HashData(Encoding.ASCII.GetBytes(k)))];
        _metricsOpen = metricsOpen;
    }

    /// <summary>How many distinct keys are accepted.</summary>
    public int Count => _digests.Length;

    /// <summary>The authenticator of <paramref name="options"/>' keys (both sources), or null when no key is configured.</summary>
    public static ApiKeyAuthenticator? FromOptions(FrontendOptions options)
    {
        IEnumerable<string> keys = options.ApiKeys;
        if (options.ApiKeyFile is not null)
        {
            keys = keys.Concat(ReadFile(options.ApiKeyFile));
        }

        var authenticator = new ApiKeyAuthenticator(keys, !options.MetricsRequireApiKey);
        return authenticator.Count > 0 ? authenticator : null;
    }

    /// <summary>1 to <see cref="MaxKeyLength"/> visible ASCII characters: what fits in a Bearer header unchanged.</summary>
    public static bool IsWellFormed(string? key) =>
        key is { Length: > 0 and <= MaxKeyLength } && key.All(c => c is > ' ' and < (char)127);

    /// <summary>The keys of a key file: one per line, surrounding whitespace trimmed, blank lines and # comments skipped. Throws <see cref="ArgumentException"/> naming --api-key-file.</summary>
    public static IReadOnlyList<string> ReadFile(string path)
    {
        const string Flag = "--api-key-file";
        if (!File.Exists(path))
        {
            throw new ArgumentException($"{Flag}: '{path}' does not exist", Flag);
        }

        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{Flag}: '{path}' cannot be read: {e.Message}", Flag, e);
        }

        var keys = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            if (!IsWellFormed(line))
            {
                throw new ArgumentException($"{Flag}: '{path}' line {i + 1}: a key must be 1 to {MaxKeyLength} visible ASCII characters (no spaces)", Flag);
            }

            keys.Add(line);
        }

        return keys.Count > 0 ? keys : throw new ArgumentException($"{Flag}: '{path}' has no key (one per line)", Flag);
    }

    /// <summary>Whether <paramref name="authorization"/> (the header's value) is <c>Bearer KEY</c> with an accepted key.</summary>
    public bool Accepts(string? authorization)
    {
        const string Scheme = "Bearer ";
        if (authorization is null || !authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        string key = authorization[Scheme.Length..].Trim();
        if (!IsWellFormed(key))
        {
            return false;
        }

        byte[] digest = SHA256.HashData(Encoding.ASCII.GetBytes(key));
        bool accepted = false;
        foreach (byte[] d in _digests)
        {
            accepted |= CryptographicOperations.FixedTimeEquals(digest, d);
        }

        return accepted;
    }

    /// <summary>The middleware: open paths pass; the rest need an accepted key, else 401 with an OpenAI error and <c>WWW-Authenticate: Bearer</c>.</summary>
    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        PathString path = context.Request.Path;
        if (path.Equals("/health", StringComparison.OrdinalIgnoreCase) || path.Equals("/live", StringComparison.OrdinalIgnoreCase) || path.Equals("/", StringComparison.Ordinal)
            || (_metricsOpen && path.Equals("/metrics", StringComparison.OrdinalIgnoreCase)))
        {
            return next(context);
        }

        string? authorization = context.Request.Headers.Authorization;
        if (Accepts(authorization))
        {
            return next(context);
        }

        context.Response.Headers.WWWAuthenticate = "Bearer";
        string message = string.IsNullOrEmpty(authorization)
            ? "You didn't provide an API key. Send it in the Authorization header as 'Authorization: Bearer YOUR_KEY'."
            : "Incorrect API key provided (expected 'Authorization: Bearer YOUR_KEY' with a key this server accepts).";
        return OpenAiHandler.WriteErrorAsync(context.Response, new OpenAiException(401, "invalid_request_error", message, null, "invalid_api_key"), context.RequestAborted);
    }
}
