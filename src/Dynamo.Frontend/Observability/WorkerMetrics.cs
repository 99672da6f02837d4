using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Runtime;
using Prometheus;

namespace Dynamo.Frontend.Observability;

/// <summary>
/// A worker's Prometheus metrics (<c>dynamo_component_*</c>, labels model, endpoint and instance), read from it
/// at scrape time: served on its own system port (<see cref="Status.SystemStatusServer"/>), and beside the
/// frontend's on the one <c>/metrics</c> of <c>dynamo run</c> (<see cref="FrontendServer.AddWorkerMetrics"/>).
/// The decode side's local-prefill reasons are exported from the start, at 0, so that a rate over them is
/// defined before the first fallback.
/// </summary>
internal static class WorkerMetrics
{
    private static readonly string[] DecodeFallbackReasons = [PrefillReasons.NoBlocks, PrefillReasons.PrefillFailed, PrefillReasons.ModelMismatch, PrefillReasons.ImportRefused];

    /// <summary>Adds <paramref name="worker"/>'s metrics, served as <paramref name="modelName"/>, to <paramref name="registry"/>.</summary>
    public static void Register(CollectorRegistry registry, EngineWorker worker, string modelName)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(worker);
        MetricFactory metrics = Prometheus.Metrics.WithCustomRegistry(registry);
        string[] labels = ["model", "endpoint", "instance"];
        string[] values = [modelName, worker.Address.ToString(), EndpointAddress.FormatId(worker.InstanceId)];
        Gauge G(string name, string help) => metrics.CreateGauge(name, help, labels);
        Gauge requests = G("dynamo_component_requests_total", "Requests received by the generate endpoint");
        Gauge errors = G("dynamo_component_request_errors_total", "Requests that ended with an error");
        Gauge inflight = G("dynamo_component_inflight_requests", "Requests being served");
        Gauge pending = G("dynamo_component_pending_requests", "Requests received that have not produced anything yet (at most --max-waiting-requests)");
        Gauge refused = G("dynamo_component_rejected_requests_total", "Requests refused at once with worker_overloaded (--max-waiting-requests reached)");
        Gauge running = G("dynamo_component_running_requests", "Requests in the running batch");
        Gauge waiting = G("dynamo_component_waiting_requests", "Requests waiting for admission");
        Gauge used = G("dynamo_component_kv_blocks_used", "KV blocks in use");
        Gauge total = G("dynamo_component_kv_blocks_total", "KV blocks in the pool");
        Gauge capacity = G("dynamo_component_kv_cache_capacity_bytes", "Bytes of keys and values the KV pool holds (allocated at start, touched as blocks are first used); absent for engines that store none");
        Gauge usage = G("dynamo_component_kv_cache_usage_percent", "KV blocks in use, percent of the pool");
        Gauge queries = G("dynamo_component_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache");
        Gauge hits = G("dynamo_component_prefix_cache_hits_total", "Prompt tokens found in the prefix cache");
        Gauge preemptions = G("dynamo_component_preemptions_total", "Sequences preempted (recomputed later)");
        Gauge generated = G("dynamo_component_output_tokens_total", "Tokens generated");
        Gauge stepSeconds = G("dynamo_component_step_seconds", "Time of an engine step, smoothed over about the last 10 steps (the largest of the data-parallel ranks')");
        Gauge stepBudget = G("dynamo_component_step_budget_seconds", "The step-time budget steps are planned within (--max-step-ms); 0 when off");
        Gauge kvPublished = G("dynamo_component_kv_events_published_total", "KV events published on the event plane");
        Gauge kvDropped = G("dynamo_component_kv_events_dropped_total", "KV events dropped because the buffer to the event plane was full (routers resync from the dump)");
        Gauge publishFailures = G("dynamo_component_event_publish_failures_total", "KV event and load publishes that failed (the worker keeps publishing)");
        Gauge remote = G("dynamo_component_remote_prefills_total", "Decode side: requests whose KV came from a prefill worker");
        Gauge local = metrics.CreateGauge("dynamo_component_local_prefills_total", "Decode side: requests asked to prefill remotely that prefilled locally, by reason", [.. labels, "reason"]);
        foreach (string reason in DecodeFallbackReasons)
        {
            local.WithLabels([.. values, reason]);
        }

        Gauge received = G("dynamo_component_kv_transfer_received_bytes_total", "Decode side: bytes of KV received from prefill workers");
        Gauge receivedParts = G("dynamo_component_kv_transfer_received_parts_total", "Decode side: parts the KV received came in (one per whole transfer, one per rank of a tensor-parallel prefill worker)");
        Gauge receivedBlocks = G("dynamo_component_kv_transfer_received_blocks_total", "Decode side: KV blocks filled from transfers");
        Gauge transferSeconds = G("dynamo_component_kv_transfer_seconds_total", "Decode side: seconds the KV transfers took (as the senders measured them)");
        Gauge remoteSeconds = G("dynamo_component_remote_prefill_seconds_total", "Decode side: seconds from asking a prefill worker to the KV's arrival");
        Gauge served = G("dynamo_component_prefills_served_total", "Prefill side: prefills run for decode workers");
        Gauge sent = G("dynamo_component_kv_transfer_sent_bytes_total", "Prefill side: bytes of KV pushed to decode workers");
        Gauge sentParts = G("dynamo_component_kv_transfer_sent_parts_total", "Prefill side: parts of KV pushed (one per transfer, or one per rank of a tensor-parallel worker)");
        Gauge sendFailures = G("dynamo_component_kv_transfer_send_failures_total", "Prefill side: KV pushes that failed");
        string[] rankLabels = [.. labels, "dp_rank"];
        Gauge R(string name, string help) => metrics.CreateGauge(name, help, rankLabels);
        bool ranked = worker.IsDataParallel;
        Gauge? rankRunning = ranked ? R("dynamo_component_dp_rank_running_requests", "Requests in the running batch of each data-parallel rank") : null;
        Gauge? rankWaiting = ranked ? R("dynamo_component_dp_rank_waiting_requests", "Requests waiting for admission at each data-parallel rank") : null;
        Gauge? rankUsed = ranked ? R("dynamo_component_dp_rank_kv_blocks_used", "KV blocks in use at each data-parallel rank") : null;
        Gauge? rankTotal = ranked ? R("dynamo_component_dp_rank_kv_blocks_total", "KV blocks in the pool of each data-parallel rank") : null;
        Gauge? rankPrompt = ranked ? R("dynamo_component_dp_rank_prompt_tokens_total", "Prompt tokens of the requests each data-parallel rank admitted") : null;
        Gauge? rankHits = ranked ? R("dynamo_component_dp_rank_prefix_cache_hits_total", "Prompt tokens each data-parallel rank found in its prefix cache") : null;
        Gauge? rankFinished = ranked ? R("dynamo_component_dp_rank_requests_finished_total", "Requests each data-parallel rank finished") : null;
        registry.AddBeforeCollectCallback(() =>
        {
            if (ranked)
            {
                IReadOnlyList<EngineStats> perRank = worker.RankStats;
                for (int i = 0; i < perRank.Count; i++)
                {
                    string[] at = [.. values, (worker.FirstDpRank + i).ToString(System.Globalization.CultureInfo.InvariantCulture)];
                    rankRunning!.WithLabels(at).Set(perRank[i].RunningRequests);
                    rankWaiting!.WithLabels(at).Set(perRank[i].WaitingRequests);
                    rankUsed!.WithLabels(at).Set(perRank[i].KvBlocksUsed);
                    rankTotal!.WithLabels(at).Set(perRank[i].KvBlocksTotal);
                    rankPrompt!.WithLabels(at).Set(perRank[i].PromptTokens);
                    rankHits!.WithLabels(at).Set(perRank[i].PrefixHitTokens);
                    rankFinished!.WithLabels(at).Set(perRank[i].RequestsFinished);
                }
            }

            EngineStats s = worker.Stats;
            WorkerDisaggregationStats d = worker.Disaggregation;
            remote.WithLabels(values).Set(d.RemotePrefills);
            foreach ((string reason, long count) in d.LocalFallbacks)
            {
                local.WithLabels([.. values, reason]).Set(count);
            }

            received.WithLabels(values).Set(d.TransferBytesReceived);
            receivedBlocks.WithLabels(values).Set(d.TransferBlocksReceived);
            receivedParts.WithLabels(values).Set(d.TransferPartsReceived);
            transferSeconds.WithLabels(values).Set(d.TransferSeconds);
            remoteSeconds.WithLabels(values).Set(d.RemotePrefillSeconds);
            served.WithLabels(values).Set(d.PrefillsServed);
            sent.WithLabels(values).Set(d.TransferBytesSent);
            sentParts.WithLabels(values).Set(d.TransferPartsSent);
            sendFailures.WithLabels(values).Set(d.TransferSendFailures);
            requests.WithLabels(values).Set(worker.RequestsTotal);
            errors.WithLabels(values).Set(worker.RequestErrors);
            inflight.WithLabels(values).Set(worker.InFlight);
            pending.WithLabels(values).Set(worker.WaitingRequests);
            refused.WithLabels(values).Set(worker.RequestsRefused);
            running.WithLabels(values).Set(s.RunningRequests);
            waiting.WithLabels(values).Set(s.WaitingRequests);
            used.WithLabels(values).Set(s.KvBlocksUsed);
            total.WithLabels(values).Set(s.KvBlocksTotal);
            if (s.KvCacheBytes > 0)
            {
                capacity.WithLabels(values).Set(s.KvCacheBytes);
            }
            usage.WithLabels(values).Set(s.KvUsage * 100);
            queries.WithLabels(values).Set(s.PrefixQueryTokens);
            hits.WithLabels(values).Set(s.PrefixHitTokens);
            preemptions.WithLabels(values).Set(s.Preemptions);
            generated.WithLabels(values).Set(s.GeneratedTokens);
            stepSeconds.WithLabels(values).Set(s.StepMs / 1000);
            stepBudget.WithLabels(values).Set(s.MaxStepMs / 1000);
            kvPublished.WithLabels(values).Set(worker.KvEventsPublished);
            kvDropped.WithLabels(values).Set(worker.KvEventsDropped);
            publishFailures.WithLabels(values).Set(worker.PublishFailures);
        });
    }
}
