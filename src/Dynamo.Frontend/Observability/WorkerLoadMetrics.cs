using System.Globalization;
using Dynamo.Components.Registry;
using Dynamo.Runtime;
using Prometheus;

namespace Dynamo.Frontend.Observability;

/// <summary>
/// Per worker, what the routing process (the frontend or a Processor component) knows of it, read at scrape time
/// (<c>dynamo_frontend_worker_*</c>, labels model, endpoint, worker_id (the instance id in hex, as the workers'
/// own <c>instance</c> label writes it) and dp_rank): the last load report it published on the event plane
/// (running, waiting, KV blocks, prefix hit rate, the report's age), the requests routed to it and the tokens it
/// generated for them. A worker's
/// series leave with its model card. The workers' own <c>dynamo_component_*</c> metrics are richer; these are one
/// scrape target's view of all of them, with names of their own so that a Prometheus scraping the workers too
/// never sums a worker twice.
/// </summary>
internal static class WorkerLoadMetrics
{
    public static void Register(CollectorRegistry registry, ModelRegistry models)
    {
        MetricFactory f = Prometheus.Metrics.WithCustomRegistry(registry);
        string[] labels = ["model", "endpoint", "worker_id", "dp_rank"];
        Gauge G(string name, string help) => f.CreateGauge(name, help, labels);
        Gauge running = G("dynamo_frontend_worker_running_requests", "Requests in the worker's running batch, as its last load report says");
        Gauge waiting = G("dynamo_frontend_worker_waiting_requests", "Requests waiting for admission at the worker, as its last load report says");
        Gauge used = G("dynamo_frontend_worker_kv_blocks_used", "KV blocks in use at the worker, as its last load report says");
        Gauge total = G("dynamo_frontend_worker_kv_blocks_total", "KV blocks in the worker's pool, as its last load report says");
        Gauge usage = G("dynamo_frontend_worker_kv_cache_usage_percent", "KV blocks in use, percent of the worker's pool, as its last load report says");
        Gauge hitRate = G("dynamo_frontend_worker_prefix_cache_hit_rate", "Fraction (0-1) of the worker's prompt tokens found in its prefix cache since it started, as its last load report says");
        Gauge age = G("dynamo_frontend_worker_load_report_age_seconds", "Seconds since the worker's last load report arrived (reports come every second)");
        Gauge routed = f.CreateGauge("dynamo_frontend_worker_routed_requests_total", "Requests sent to the worker by this process's router, any router mode (a migrated stream counts again on its next worker)",
            ["model", "worker_id"]);
        Gauge generated = f.CreateGauge("dynamo_frontend_worker_output_tokens_total", "Tokens the worker generated for requests streamed through this process (a counter: use rate() for tokens/s)",
            ["worker_id"]);
        Gauge[] perWorker = [running, waiting, used, total, usage, hitRate, age];
        registry.AddBeforeCollectCallback(() =>
        {
            var instances = models.Models.Values.SelectMany(m => m.Instances.Select(i => (Model: m.Name, i.InstanceId, Endpoint: i.Card.Endpoint))).ToArray();
            var live = instances.Select(i => i.InstanceId).ToHashSet();
            models.Loads.Forget(live);

            // Series of a worker that left are removed, not left at their last value.
            foreach (Gauge g in perWorker)
            {
                foreach (string[] values in g.GetAllLabelValues().ToArray())
                {
                    if (!live.Contains(long.Parse(values[2], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture)))
                    {
                        g.RemoveLabelled(values);
                    }
                }
            }

            foreach (WorkerLoads.Report report in models.Loads.Snapshot())
            {
                string worker = EndpointAddress.FormatId(report.Load.WorkerId);
                string rank = report.Load.DpRank.ToString(CultureInfo.InvariantCulture);
                foreach (var instance in instances.Where(i => i.InstanceId == report.Load.WorkerId))
                {
                    string[] values = [instance.Model, instance.Endpoint, worker, rank];
                    running.WithLabels(values).Set(report.Load.Running);
                    waiting.WithLabels(values).Set(report.Load.Waiting);
                    used.WithLabels(values).Set(report.Load.KvBlocksUsed);
                    total.WithLabels(values).Set(report.Load.KvBlocksTotal);
                    usage.WithLabels(values).Set(report.Load.KvBlocksTotal == 0 ? 0 : 100.0 * report.Load.KvBlocksUsed / report.Load.KvBlocksTotal);
                    hitRate.WithLabels(values).Set(report.Load.PrefixHitRate);
                    age.WithLabels(values).Set(models.Loads.AgeSeconds(report));
                }
            }

            foreach ((string model, long workerId, long count) in models.Routing.Snapshot())
            {
                routed.WithLabels(model, EndpointAddress.FormatId(workerId)).Set(count);
            }

            foreach ((long workerId, long tokens) in models.Routing.GeneratedSnapshot())
            {
                generated.WithLabels(EndpointAddress.FormatId(workerId)).Set(tokens);
            }
        });
    }
}
