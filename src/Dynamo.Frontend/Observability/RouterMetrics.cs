using System.Globalization;
using Dynamo.Components.Registry;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Prometheus;

namespace Dynamo.Frontend.Observability;

/// <summary>
/// The KV routers' counters as Prometheus gauges (<c>dynamo_frontend_router_*</c>, label endpoint), read
/// at scrape time, with the disaggregation and request-migration counters (label model): exported by whichever
/// process routes, the frontend or a Processor component; and, per worker, its load reports and the requests
/// routed to it (<see cref="WorkerLoadMetrics"/>).
/// </summary>
internal static class RouterMetrics
{
    public static void Register(CollectorRegistry registry, ModelRegistry models)
    {
        ArgumentNullException.ThrowIfNull(models);
        Func<IEnumerable<(string Endpoint, Llm.Routing.RouterStats Stats)>> routers = models.KvRouterStats;
        Func<IEnumerable<(string Model, Llm.Disaggregation.DisaggregationCounters Counters)>> disaggregation = models.Disaggregation;
        Components.Processing.MigrationCounters migration = models.Migration;
        WorkerLoadMetrics.Register(registry, models);
        MetricFactory f = Prometheus.Metrics.WithCustomRegistry(registry);
        string[] label = ["endpoint"];
        Gauge G(string name, string help) => f.CreateGauge(name, help, new GaugeConfiguration { LabelNames = label });
        Gauge queue = G("dynamo_frontend_router_queue_depth", "Requests waiting in the KV router for a worker with room");
        Gauge decisions = G("dynamo_frontend_router_decisions_total", "KV routing decisions");
        Gauge rejections = G("dynamo_frontend_router_rejections_total", "Requests the KV router refused (queue full, no worker)");
        Gauge predicted = G("dynamo_frontend_router_predicted_hit_tokens_total", "Prompt tokens the router predicted cached, for requests whose outcome was reported");
        Gauge actual = G("dynamo_frontend_router_actual_hit_tokens_total", "Prompt tokens the engines actually found cached, for the same requests");
        Gauge dropped = G("dynamo_frontend_router_events_dropped_total", "KV events and load reports dropped before the router read them (it resyncs from the workers' dumps)");
        Gauge malformed = G("dynamo_frontend_router_malformed_events_total", "Event-plane messages that were not valid KV events or load reports");
        Gauge dumps = G("dynamo_frontend_router_dumps_loaded_total", "Worker KV dumps loaded (joins, gaps)");
        Gauge resyncs = G("dynamo_frontend_router_accuracy_resyncs_total", "Worker indexes resynced from a dump because the router's accuracy on the worker fell below --router-resync-accuracy");
        string[] workerLabels = ["endpoint", "worker_id", "dp_rank"];
        Gauge accuracy = f.CreateGauge("dynamo_frontend_router_worker_accuracy", "The router's accuracy on a worker over its latest completed requests: 1 - wrongly predicted cached blocks / blocks at stake (1 before any report)",
            new GaugeConfiguration { LabelNames = workerLabels });
        Gauge retention = f.CreateGauge("dynamo_frontend_router_worker_prefix_retention_seconds", "The router's eviction estimate for a worker: seconds a block freed now stays in its KV pool (free blocks / new blocks sent it per second, smoothed; 120 before an estimate, at most 600)",
            new GaugeConfiguration { LabelNames = workerLabels });
        Gauge indexed = G("dynamo_frontend_router_indexed_blocks", "KV blocks the router's index holds, over every worker (its view of the workers' prefix caches)");
        Gauge disagg = f.CreateGauge("dynamo_frontend_disagg_decisions_total", "Where requests were sent to prefill (remote: a prefill worker; local: the decode worker), and why",
            new GaugeConfiguration { LabelNames = ["model", "prefill", "reason"] });
        string[] modelLabel = ["model"];
        Gauge M(string name, string help) => f.CreateGauge(name, help, new GaugeConfiguration { LabelNames = modelLabel });
        Gauge remoteDone = M("dynamo_frontend_disagg_remote_prefills_total", "Requests whose KV came from a prefill worker (the decode workers' reports)");
        Gauge fallbacks = f.CreateGauge("dynamo_frontend_disagg_local_fallbacks_total", "Requests sent for a remote prefill that their decode worker prefilled itself, by reason",
            new GaugeConfiguration { LabelNames = ["model", "reason"] });
        Gauge waitSum = M("dynamo_frontend_disagg_route_wait_seconds_sum", "Per-request breakdown, queue: seconds waited for a route (decode and prefill worker), summed");
        Gauge waitCount = M("dynamo_frontend_disagg_route_wait_seconds_count", "Per-request breakdown, queue: requests routed with prefill workers");
        Gauge prefillSum = M("dynamo_frontend_disagg_prefill_seconds_sum", "Per-request breakdown, prefill: seconds from asking the prefill worker to the KV's arrival, summed over remote prefills");
        Gauge transferSum = M("dynamo_frontend_disagg_transfer_seconds_sum", "Per-request breakdown, transfer: seconds of the KV transfer, summed over remote prefills");
        Gauge transferBytes = M("dynamo_frontend_disagg_transfer_bytes_total", "Bytes of KV moved from prefill to decode workers");
        Gauge migrations = f.CreateGauge("dynamo_frontend_migrations_total", "Streams moved to another worker after theirs died, stalled, stopped or failed mid-stream, by reason",
            new GaugeConfiguration { LabelNames = ["model", "reason"] });
        Gauge exhausted = M("dynamo_frontend_migrations_exhausted_total", "Streams that failed mid-stream and could not move (--migration-limit used up, or no worker left)");
        registry.AddBeforeCollectCallback(() =>
        {
            foreach (var (model, reason, count) in migration.Migrations())
            {
                migrations.WithLabels(model, reason).Set(count);
            }

            foreach (var (model, count) in migration.ExhaustedStreams())
            {
                exhausted.WithLabels(model).Set(count);
            }

            foreach (var (model, counters) in disaggregation())
            {
                foreach (var (remote, reason, count) in counters.Snapshot())
                {
                    disagg.WithLabels(model, remote ? "remote" : "local", reason).Set(count);
                }

                foreach (var (reason, count) in counters.Fallbacks)
                {
                    fallbacks.WithLabels(model, reason).Set(count);
                }

                remoteDone.WithLabels(model).Set(counters.RemoteCompleted);
                waitSum.WithLabels(model).Set(counters.RouteWaitSeconds);
                waitCount.WithLabels(model).Set(counters.RouteWaits);
                prefillSum.WithLabels(model).Set(counters.PrefillSeconds);
                transferSum.WithLabels(model).Set(counters.TransferSeconds);
                transferBytes.WithLabels(model).Set(counters.TransferBytes);
            }

            var workerSeries = new HashSet<(string, string, string)>();
            foreach (var (endpoint, s) in routers())
            {
                queue.WithLabels(endpoint).Set(s.QueueDepth);
                decisions.WithLabels(endpoint).Set(s.Decisions);
                rejections.WithLabels(endpoint).Set(s.Rejections);
                predicted.WithLabels(endpoint).Set(s.ReportedPredictedHitTokens);
                actual.WithLabels(endpoint).Set(s.ReportedActualHitTokens);
                dropped.WithLabels(endpoint).Set(s.EventsDropped);
                malformed.WithLabels(endpoint).Set(s.MalformedEvents);
                dumps.WithLabels(endpoint).Set(s.DumpsLoaded);
                indexed.WithLabels(endpoint).Set(s.Workers.Sum(w => (double)w.IndexedBlocks));
                resyncs.WithLabels(endpoint).Set(s.AccuracyResyncs);
                foreach (WorkerLoadSnapshot w in s.Workers)
                {
                    var series = (endpoint, EndpointAddress.FormatId(w.WorkerId), w.DpRank.ToString(CultureInfo.InvariantCulture));
                    workerSeries.Add(series);
                    accuracy.WithLabels(series.Item1, series.Item2, series.Item3).Set(w.Accuracy);
                    retention.WithLabels(series.Item1, series.Item2, series.Item3).Set(w.PrefixRetention.TotalSeconds);
                }
            }

            RemoveLeft(accuracy, workerSeries);
            RemoveLeft(retention, workerSeries);
        });
    }

    // A worker that left loses its series instead of keeping its last value.
    private static void RemoveLeft(Gauge perWorker, HashSet<(string, string, string)> live)
    {
        foreach (string[] values in perWorker.GetAllLabelValues().ToArray())
        {
            if (!live.Contains((values[0], values[1], values[2])))
            {
                perWorker.RemoveLabelled(values);
            }
        }
    }
}
