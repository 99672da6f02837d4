using Dynamo.Components.Processing;
using Prometheus;

namespace Dynamo.Frontend.Observability;

/// <summary>
/// A Processor component's Prometheus metrics, read from it at scrape time: its requests
/// (<c>dynamo_processor_*</c>) and the KV routers it runs (<c>dynamo_frontend_router_*</c>).
/// </summary>
internal sealed class ProcessorMetrics
{
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();

    public ProcessorMetrics(ProcessorServer processor)
    {
        ArgumentNullException.ThrowIfNull(processor);
        RouterMetrics.Register(_registry, processor.Registry);
        MetricFactory f = Prometheus.Metrics.WithCustomRegistry(_registry);
        Gauge total = f.CreateGauge("dynamo_processor_requests_total", "Requests frontends relayed to this processor");
        Gauge inflight = f.CreateGauge("dynamo_processor_inflight_requests", "Requests this processor is answering");
        _registry.AddBeforeCollectCallback(() =>
        {
            total.Set(processor.Requests);
            inflight.Set(processor.InflightRequests);
        });
    }

    /// <summary>Writes every metric in the Prometheus text format.</summary>
    public Task ExportAsync(Stream destination, CancellationToken cancellationToken = default) =>
        _registry.CollectAndExportAsTextAsync(destination, cancellationToken);
}
