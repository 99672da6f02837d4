namespace Dynamo.Cli;

/// <summary>
/// Per-request traces (README "Tracing requests"): off unless an OTLP endpoint is configured, by <c>--otlp-endpoint</c>
/// or by OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (OTEL_SDK_DISABLED=true
/// turns it off whatever else says). The exporter reads the rest of OpenTelemetry's variables itself
/// (OTEL_EXPORTER_OTLP_PROTOCOL, _HEADERS, _TIMEOUT, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES).
/// </summary>
internal sealed record TracingOptions
{
    public static TracingOptions Default { get; } = new();

    /// <summary>Whether spans are recorded and exported at all.</summary>
    public bool Enabled { get; init; }

    /// <summary>The collector's base URL from --otlp-endpoint (as OTEL_EXPORTER_OTLP_ENDPOINT); null: the exporter reads the environment.</summary>
    public Uri? Endpoint { get; init; }

    /// <summary>The service.name of this process's spans, unless OTEL_SERVICE_NAME names one.</summary>
    public string ServiceName { get; init; } = "dynamo";

    /// <summary>
    /// The options of a command with <paramref name="flag"/> (the --otlp-endpoint value, or null) and the environment
    /// (<paramref name="environment"/>: a variable's value, or null); a malformed URL names the flag.
    /// </summary>
    public static TracingOptions From(string? flag, string serviceName, Func<string, string?> environment)
    {
        Uri? endpoint = null;
        if (!string.IsNullOrWhiteSpace(flag))
        {
            if (!Uri.TryCreate(flag.Trim(), UriKind.Absolute, out endpoint) || endpoint.Scheme is not ("http" or "https"))
            {
                throw new CliUsageException($"--otlp-endpoint: '{flag}' is not an http:// or https:// URL (the OTLP collector, e.g. http://localhost:4317)");
            }
        }

        bool disabled = string.Equals(environment("OTEL_SDK_DISABLED")?.Trim(), "true", StringComparison.OrdinalIgnoreCase);
        bool configured = endpoint is not null
            || !string.IsNullOrWhiteSpace(environment("OTEL_EXPORTER_OTLP_ENDPOINT"))
            || !string.IsNullOrWhiteSpace(environment("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        return Default with { Enabled = configured && !disabled, Endpoint = endpoint, ServiceName = serviceName };
    }
}
