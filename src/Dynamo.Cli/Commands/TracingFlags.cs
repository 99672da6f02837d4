using System.CommandLine;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>--otlp-endpoint URL</c>, on every serving command (run, frontend, worker, router, serve): exports each request's
/// spans to that OpenTelemetry collector (README "Tracing requests").
/// </summary>
internal sealed class TracingFlags
{
    private readonly Option<string?> _endpoint = new("--otlp-endpoint")
    {
        Description = "Export per-request traces to this OTLP collector (as OTEL_EXPORTER_OTLP_ENDPOINT; grpc unless OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf); off unless this or that variable is set",
        HelpName = "URL",
    };

    public static TracingFlags AddTo(Command command)
    {
        var flags = new TracingFlags();
        command.Options.Add(flags._endpoint);
        return flags;
    }

    /// <summary>The tracing options of this command line, its spans named <paramref name="serviceName"/> unless OTEL_SERVICE_NAME says otherwise.</summary>
    public TracingOptions Read(ParseResult parse, string serviceName) =>
        TracingOptions.From(parse.GetValue(_endpoint), serviceName, Environment.GetEnvironmentVariable);
}
