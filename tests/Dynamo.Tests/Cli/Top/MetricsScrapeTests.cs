using Dynamo.Cli.Top;

namespace Dynamo.Tests.Cli.Top;

public class MetricsScrapeTests
{
    internal const string Exposition = """
        # HELP dynamo_frontend_requests_total Requests
        # TYPE dynamo_frontend_requests_total counter
        dynamo_frontend_requests_total{model="m",endpoint="chat_completions",request_type="stream",status="success"} 10
        dynamo_frontend_requests_total{model="m",endpoint="completions",request_type="unary",status="error"} 2
        dynamo_frontend_inflight_requests{model="m"} 3
        dynamo_frontend_queued_requests{model="m",stage="admission"} 1
        dynamo_frontend_queued_requests{model="m",stage="worker"} 2
        dynamo_frontend_output_tokens_total{model="m"} 400
        dynamo_frontend_time_to_first_token_seconds_sum{model="m"} 1.2
        dynamo_frontend_time_to_first_token_seconds_count{model="m"} 12
        dynamo_frontend_router_queue_depth{endpoint="dynamo.backend.generate"} 4
        dynamo_frontend_router_decisions_total{endpoint="dynamo.backend.generate"} 12
        dynamo_frontend_worker_running_requests{model="m",endpoint="dynamo.backend.generate",worker_id="a1",dp_rank="0"} 2
        dynamo_frontend_worker_waiting_requests{model="m",endpoint="dynamo.backend.generate",worker_id="a1",dp_rank="0"} 1
        dynamo_frontend_worker_kv_cache_usage_percent{model="m",endpoint="dynamo.backend.generate",worker_id="a1",dp_rank="0"} 25
        dynamo_frontend_worker_prefix_cache_hit_rate{model="m",endpoint="dynamo.backend.generate",worker_id="a1",dp_rank="0"} 0.5
        dynamo_frontend_worker_routed_requests_total{model="m",worker_id="a1"} 9
        dynamo_frontend_worker_routed_requests_total{model="m",worker_id="b2"} 3
        dynamo_frontend_worker_output_tokens_total{worker_id="a1"} 360
        dynamo_component_output_tokens_total{model="m",endpoint="dynamo.prefill.generate",instance="b2"} 100
        dynamo_component_running_requests{model="m",endpoint="dynamo.prefill.generate",instance="b2"} 1
        dynamo_component_prefix_cache_queries_total{model="m",endpoint="dynamo.prefill.generate",instance="b2"} 200
        dynamo_component_prefix_cache_hits_total{model="m",endpoint="dynamo.prefill.generate",instance="b2"} 50
        """;

    [Fact]
    public void Parse_FrontendAndWorkerSeries_OneSamplePerWorkerAndTheFrontendSums()
    {
        MetricsScrape scrape = MetricsScrape.Parse(Exposition, TimeSpan.Zero);

        Assert.True(scrape.IsFrontend);
        Assert.Equal([12, 3, 1, 2, 400, 4, 12], [scrape.Requests, scrape.Inflight, scrape.QueuedAdmission, scrape.QueuedWorker, scrape.OutputTokens, scrape.RouterQueue, scrape.RouterDecisions]);
        Assert.Equal(["a1", "b2"], scrape.Workers.Select(w => w.Id));
        WorkerSample a = scrape.Workers[0];
        Assert.Equal(("backend", 2.0, 1.0, 25.0, 0.5, 9.0, (double?)360), (a.Role, a.Running, a.Waiting, a.KvUsagePercent, a.PrefixHitRate, a.Routed, a.OutputTokens));
        WorkerSample b = scrape.Workers[1];
        Assert.Equal(("prefill", 1.0, (double?)null, 0.25, 3.0, 100.0), (b.Role, b.Running, b.Waiting, b.PrefixHitRate, b.Routed, b.OutputTokens));
    }

    [Fact]
    public void Parse_TextWithoutFrontendSeries_IsNotAFrontend()
    {
        Assert.False(MetricsScrape.Parse("process_cpu_seconds_total 3\n", TimeSpan.Zero).IsFrontend);
    }
}
