using System.Net;
using Dynamo.Components.Processing;
using Dynamo.Components.Workers;
using Dynamo.Frontend.Observability;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Dynamo.Frontend.Status;

/// <summary>
/// A worker's (or a Processor component's) own HTTP port (`--system-port`, env DYN_SYSTEM_PORT, as the original's workers): /metrics
/// (Prometheus, `dynamo_component_*`, read from the engine at scrape time), /health (200 with the
/// endpoint and instance it serves) and /live.
/// </summary>
public sealed class SystemStatusServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SystemStatusServer(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
    }

    /// <summary>The bound address.</summary>
    public Uri BaseAddress { get; }

    /// <summary>Serves <paramref name="worker"/>'s status on <paramref name="host"/>:<paramref name="port"/> (0 = any free port).</summary>
    public static async Task<SystemStatusServer> StartAsync(EngineWorker worker, string modelName, string host, int port, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(worker);
        WebApplication app = Build(host, port);
        CollectorRegistry registry = Metrics.NewCustomRegistry();
        WorkerMetrics.Register(registry, worker, modelName);
        return await ServeAsync(app, (stream, ct) => registry.CollectAndExportAsTextAsync(stream, ct), () => new Dictionary<string, object>
        {
            ["status"] = "ready",
            ["endpoint"] = worker.Address.ToString(),
            ["instance_id"] = Runtime.EndpointAddress.FormatId(worker.InstanceId),
            ["model"] = modelName,
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Serves a Processor component's status on <paramref name="host"/>:<paramref name="port"/>: /metrics
    /// (its requests and the KV routers it runs), /health (200 with the models it sees) and /live.
    /// </summary>
    public static async Task<SystemStatusServer> StartAsync(ProcessorServer processor, string host, int port, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(processor);
        WebApplication app = Build(host, port);
        var metrics = new ProcessorMetrics(processor);
        return await ServeAsync(app, metrics.ExportAsync, () => new Dictionary<string, object>
        {
            ["status"] = "ready",
            ["endpoint"] = processor.Address.ToString(),
            ["models"] = processor.Models,
        }, cancellationToken).ConfigureAwait(false);
    }

    private static WebApplication Build(string host, int port)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Parse(host == "0.0.0.0" ? "0.0.0.0" : host), port));
        return builder.Build();
    }

    private static async Task<SystemStatusServer> ServeAsync(WebApplication app, Func<Stream, CancellationToken, Task> exportMetrics, Func<Dictionary<string, object>> health, CancellationToken cancellationToken)
    {
        app.MapGet("/metrics", (RequestDelegate)(async context =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await exportMetrics(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
        }));
        app.MapGet("/live", () => Results.Text("ok"));
        app.MapGet("/health", () => Results.Json(health()));
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var address = new Uri(app.Urls.First().Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).Replace("[::]", "127.0.0.1", StringComparison.Ordinal) + "/");
        return new SystemStatusServer(app, address);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
