using Dynamo.Llm.Tracing;
using Microsoft.AspNetCore.Http;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Dynamo.Cli;

/// <summary>
/// The one place the OpenTelemetry SDK is attached (the other projects only emit through
/// <see cref="System.Diagnostics.ActivitySource"/>, Dynamo.Llm/Tracing): a tracer provider listening to every
/// <c>Dynamo.*</c> source and to ASP.NET Core's API requests, exporting over OTLP in batches. Off, nothing listens,
/// and the sources create no spans.
/// </summary>
internal static class CliTracing
{
    /// <summary>
    /// The tracer provider of <paramref name="options"/> (dispose it at exit: that flushes the last batch), and one line
    /// on <paramref name="log"/> saying where spans go, prefixed with <paramref name="who"/>; null when tracing is off.
    /// </summary>
    public static TracerProvider? Start(TracingOptions options, TextWriter log, string who)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        if (!options.Enabled)
        {
            return null;
        }

        string service = Environment.GetEnvironmentVariable("OTEL_SERVICE_NAME") is { Length: > 0 } named ? named : options.ServiceName;
        string target = options.Endpoint?.ToString() ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "";
        log.WriteLine($"{who}: tracing requests: spans of service {service} to the OTLP collector at {target}");
        return Sdk.CreateTracerProviderBuilder()
            .ConfigureResource(resource =>
            {
                // OTEL_SERVICE_NAME, read by the default resource, wins over the component's name.
                if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("OTEL_SERVICE_NAME")))
                {
                    resource.AddService(options.ServiceName);
                }
            })
            .AddSource(DynamoTracing.SourcePrefix + "*")
            .AddAspNetCoreInstrumentation(o => o.Filter = context => IsApiRequest(context.Request.Path))
            .AddOtlpExporter(o =>
            {
                if (options.Endpoint is { } endpoint)
                {
                    o.Endpoint = o.Protocol == OtlpExportProtocol.HttpProtobuf ? TracesUrl(endpoint) : endpoint;
                }
            })
            .Build();
    }

    /// <summary>The requests an HTTP span is recorded for: the OpenAI API, not /metrics, /health or the web page's polling.</summary>
    internal static bool IsApiRequest(PathString path) => path.StartsWithSegments("/v1", StringComparison.Ordinal) && !path.StartsWithSegments("/v1/dynamo", StringComparison.Ordinal);

    /// <summary>
    /// The traces URL of a base endpoint over OTLP/HTTP: <c>{base}/v1/traces</c>, as OpenTelemetry builds it from
    /// OTEL_EXPORTER_OTLP_ENDPOINT (a URL already ending in it is kept; the exporter itself uses a URL set in code as it is).
    /// </summary>
    internal static Uri TracesUrl(Uri endpoint)
    {
        string path = endpoint.AbsolutePath.TrimEnd('/');
        return path.EndsWith("/v1/traces", StringComparison.Ordinal) ? endpoint : new UriBuilder(endpoint) { Path = path + "/v1/traces" }.Uri;
    }
}
