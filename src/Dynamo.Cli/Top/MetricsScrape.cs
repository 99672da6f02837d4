using System.Globalization;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Top;

/// <summary>
/// One read of a frontend's <c>/metrics</c>, reduced to what <c>dynamo top</c> shows: one
/// <see cref="WorkerSample"/> per worker (keyed by its instance id in hex, the <c>worker_id</c> and
/// <c>instance</c> labels) and the frontend's own counters and gauges, summed over models.
/// </summary>
internal sealed record MetricsScrape(TimeSpan At, IReadOnlyList<WorkerSample> Workers)
{
    public double Requests { get; init; }

    public double Inflight { get; init; }

    public double QueuedAdmission { get; init; }

    public double QueuedWorker { get; init; }

    public double OutputTokens { get; init; }

    public double Rejected { get; init; }

    public double RouterQueue { get; init; }

    public double RouterDecisions { get; init; }

    public double TtftSum { get; init; }

    public double TtftCount { get; init; }

    public double ItlSum { get; init; }

    public double ItlCount { get; init; }

    /// <summary>Whether the text held any <c>dynamo_frontend_*</c> series (else it is not a Dynamo frontend's).</summary>
    public bool IsFrontend { get; init; }

    public static MetricsScrape Parse(string text, TimeSpan at)
    {
        PrometheusSample[] samples = [.. PrometheusText.Parse(text)];
        var workers = new Dictionary<string, WorkerSample>(StringComparer.Ordinal);

        WorkerSample Worker(string id, string model, string endpoint)
        {
            if (!workers.TryGetValue(id, out WorkerSample? w))
            {
                w = new WorkerSample(id, model, endpoint);
            }
            else if ((w.Endpoint.Length == 0 && endpoint.Length > 0) || (w.Model.Length == 0 && model.Length > 0))
            {
                w = w with { Model = w.Model.Length == 0 ? model : w.Model, Endpoint = w.Endpoint.Length == 0 ? endpoint : w.Endpoint };
            }

            return w;
        }

        // The routing process's view of every worker first; the workers' own series (dynamo run) fill what it lacks.
        var componentQueries = new Dictionary<string, double>(StringComparer.Ordinal);
        var componentHits = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (PrometheusSample s in samples)
        {
            string frontendId = s.Label("worker_id");
            if (frontendId.Length > 0 && s.Name.StartsWith("dynamo_frontend_worker_", StringComparison.Ordinal))
            {
                WorkerSample w = Worker(frontendId, s.Label("model"), s.Label("endpoint"));
                workers[frontendId] = s.Name switch
                {
                    "dynamo_frontend_worker_running_requests" => w with { Running = (w.Running ?? 0) + s.Value },
                    "dynamo_frontend_worker_waiting_requests" => w with { Waiting = (w.Waiting ?? 0) + s.Value },
                    "dynamo_frontend_worker_kv_cache_usage_percent" => w with { KvUsagePercent = Math.Max(w.KvUsagePercent ?? 0, s.Value) },
                    "dynamo_frontend_worker_prefix_cache_hit_rate" => w with { PrefixHitRate = Math.Max(w.PrefixHitRate ?? 0, s.Value) },
                    "dynamo_frontend_worker_routed_requests_total" => w with { Routed = w.Routed + s.Value },
                    "dynamo_frontend_worker_output_tokens_total" => w with { OutputTokens = (w.OutputTokens ?? 0) + s.Value },
                    _ => w,
                };
            }
        }

        foreach (PrometheusSample s in samples)
        {
            string instance = s.Label("instance");
            if (instance.Length == 0 || !s.Name.StartsWith("dynamo_component_", StringComparison.Ordinal) || s.Labels.ContainsKey("dp_rank"))
            {
                continue;
            }

            WorkerSample w = Worker(instance, s.Label("model"), s.Label("endpoint"));
            switch (s.Name)
            {
                case "dynamo_component_output_tokens_total":
                    w = w with { OutputTokens = s.Value };
                    break;
                case "dynamo_component_running_requests":
                    w = w with { Running = w.Running ?? s.Value };
                    break;
                case "dynamo_component_waiting_requests":
                    w = w with { Waiting = w.Waiting ?? s.Value };
                    break;
                case "dynamo_component_kv_cache_usage_percent":
                    w = w with { KvUsagePercent = w.KvUsagePercent ?? s.Value };
                    break;
                case "dynamo_component_prefix_cache_queries_total":
                    componentQueries[instance] = s.Value;
                    break;
                case "dynamo_component_prefix_cache_hits_total":
                    componentHits[instance] = s.Value;
                    break;
                default:
                    break;
            }

            workers[instance] = w;
        }

        foreach ((string id, double queries) in componentQueries)
        {
            if (workers[id].PrefixHitRate is null && queries > 0)
            {
                workers[id] = workers[id] with { PrefixHitRate = componentHits.GetValueOrDefault(id) / queries };
            }
        }

        double Sum(string name, Func<PrometheusSample, bool>? where = null) =>
            samples.Where(s => s.Name == name && (where is null || where(s))).Sum(s => s.Value);

        return new MetricsScrape(at, [.. workers.Values.OrderBy(w => w.Model, StringComparer.Ordinal).ThenBy(w => w.Id, StringComparer.Ordinal)])
        {
            Requests = Sum("dynamo_frontend_requests_total"),
            Inflight = Sum("dynamo_frontend_inflight_requests"),
            QueuedAdmission = Sum("dynamo_frontend_queued_requests", s => s.Label("stage") == "admission"),
            QueuedWorker = Sum("dynamo_frontend_queued_requests", s => s.Label("stage") == "worker"),
            OutputTokens = Sum("dynamo_frontend_output_tokens_total"),
            Rejected = Sum("dynamo_frontend_rejected_requests_total"),
            RouterQueue = Sum("dynamo_frontend_router_queue_depth"),
            RouterDecisions = Sum("dynamo_frontend_router_decisions_total"),
            TtftSum = Sum("dynamo_frontend_time_to_first_token_seconds_sum"),
            TtftCount = Sum("dynamo_frontend_time_to_first_token_seconds_count"),
            ItlSum = Sum("dynamo_frontend_inter_token_latency_seconds_sum"),
            ItlCount = Sum("dynamo_frontend_inter_token_latency_seconds_count"),
            // A frontend that has served nothing yet declares its families (# TYPE) without samples.
            IsFrontend = samples.Any(s => s.Name.StartsWith("dynamo_frontend_", StringComparison.Ordinal)) || text.Contains("# TYPE dynamo_frontend_", StringComparison.Ordinal),
        };
    }

    internal static string Format(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
