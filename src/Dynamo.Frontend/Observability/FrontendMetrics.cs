using Prometheus;

namespace Dynamo.Frontend.Observability;

/// <summary>
/// The frontend's Prometheus metrics, named as the original system names them so its dashboards carry
/// over. Each server has its own registry (several servers in one process do not collide).
/// </summary>
internal sealed class FrontendMetrics
{
    private static readonly string[] ModelLabel = ["model"];

    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();

    public FrontendMetrics()
    {
        MetricFactory f = Prometheus.Metrics.WithCustomRegistry(_registry);
        RequestsTotal = f.CreateCounter("dynamo_frontend_requests_total", "Requests by model, endpoint, request type (stream/unary) and status (success/error)",
            new CounterConfiguration { LabelNames = ["model", "endpoint", "request_type", "status"] });
        Inflight = f.CreateGauge("dynamo_frontend_inflight_requests", "Requests being processed", new GaugeConfiguration { LabelNames = ModelLabel });
        Queued = f.CreateGauge("dynamo_frontend_queued_requests", "Requests without their first token yet: waiting for an admission slot (stage=admission) or sent to a worker (stage=worker)",
            new GaugeConfiguration { LabelNames = ["model", "stage"] });
        TimeToFirstToken = f.CreateHistogram("dynamo_frontend_time_to_first_token_seconds", "Time from request arrival to its first token",
            new HistogramConfiguration { LabelNames = ModelLabel, Buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] });
        InterTokenLatency = f.CreateHistogram("dynamo_frontend_inter_token_latency_seconds", "Time between consecutive tokens of a choice",
            new HistogramConfiguration { LabelNames = ModelLabel, Buckets = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
        RequestDuration = f.CreateHistogram("dynamo_frontend_request_duration_seconds", "Time from request arrival to its last byte",
            new HistogramConfiguration { LabelNames = ModelLabel, Buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] });
        InputSequenceTokens = f.CreateHistogram("dynamo_frontend_input_sequence_tokens", "Prompt tokens per request",
            new HistogramConfiguration { LabelNames = ModelLabel, Buckets = Histogram.ExponentialBuckets(1, 2, 18) });
        OutputSequenceTokens = f.CreateHistogram("dynamo_frontend_output_sequence_tokens", "Generated tokens per request",
            new HistogramConfiguration { LabelNames = ModelLabel, Buckets = Histogram.ExponentialBuckets(1, 2, 18) });
        OutputTokensTotal = f.CreateCounter("dynamo_frontend_output_tokens_total", "Generated tokens", new CounterConfiguration { LabelNames = ModelLabel });
        Cancellations = f.CreateCounter("dynamo_frontend_model_cancellation_total", "Requests cancelled by the client (disconnect)", new CounterConfiguration { LabelNames = ModelLabel });
        Rejections = f.CreateCounter("dynamo_frontend_model_rejection_total", "Requests refused for lack of capacity (429/503)", new CounterConfiguration { LabelNames = ModelLabel });
        RejectedRequests = f.CreateCounter("dynamo_frontend_rejected_requests_total", "Requests refused with 429 or 503, by reason (the error's code)", new CounterConfiguration { LabelNames = ["reason"] });
    }

    /// <summary>Tokens and TTFTs as running totals, for the status endpoint's rates (<see cref="WebUi.StatusSampler"/>).</summary>
    public WebUi.ServingTotals Totals { get; } = new();

    public Counter RequestsTotal { get; }
    public Gauge Inflight { get; }
    public Gauge Queued { get; }
    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }
    public Histogram RequestDuration { get; }
    public Histogram InputSequenceTokens { get; }
    public Histogram OutputSequenceTokens { get; }
    public Counter OutputTokensTotal { get; }
    public Counter Cancellations { get; }
    public Counter Rejections { get; }

    /// <summary>429 and 503 answers by reason (the error code: queue_full, client_limit, router_overloaded, workers_overloaded, ...).</summary>
    public Counter RejectedRequests { get; }

    /// <summary>The <c>stage</c> of <see cref="Queued"/> for requests waiting for an admission slot.</summary>
    public const string AdmissionStage = "admission";

    /// <summary>The <c>stage</c> of <see cref="Queued"/> for requests sent to a worker, first token not back yet.</summary>
    public const string WorkerStage = "worker";

    /// <summary>
    /// Exports the routing counters of <paramref name="models"/> at every scrape (<see cref="RouterMetrics"/>): the KV
    /// routers' (--router-mode kv: queue depth, decisions, rejections, routing accuracy), disaggregation and migration,
    /// and per worker its last load report and the requests routed to it, any mode.
    /// </summary>
    public void ObserveRouters(Components.Registry.ModelRegistry models) => RouterMetrics.Register(_registry, models);

    /// <summary>
    /// Adds a worker of this process (<c>dynamo run</c>) to the same registry: its <c>dynamo_component_*</c> metrics
    /// beside the frontend's, on the one <c>/metrics</c>.
    /// </summary>
    public void ObserveWorker(Components.Workers.EngineWorker worker, string modelName) => WorkerMetrics.Register(_registry, worker, modelName);

    /// <summary>Writes every metric in the Prometheus text format.</summary>
    public Task ExportAsync(Stream destination, CancellationToken cancellationToken) =>
        _registry.CollectAndExportAsTextAsync(destination, cancellationToken);
}
