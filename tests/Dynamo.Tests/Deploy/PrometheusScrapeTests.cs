using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Deploy;

/// <summary>
/// deploy/metrics against the running system: a real Prometheus (Debian's package) scrapes a deployment with the
/// committed prometheus.yml (only its targets replaced with the test's), and every query of the Grafana dashboard is
/// asked of its HTTP API after some requests; every metric name the dashboard's PromQL uses must appear in a real
/// /metrics scrape. Waits are for conditions (a target up, a query answering), each bounded.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class PrometheusScrapeTests
{
    private const string Model = "nvidia/Llama-3.1-405B-Instruct-FP8";

    /// <summary>What $__rate_interval becomes in the queries: longer than the test, so a rate sees all of it.</summary>
    private const string RateWindow = "10m";

    private static string MetricsPath(params string[] parts) => Path.Combine([RepoPaths.Root, "deploy", "metrics", .. parts]);

    /// <summary>A dashboard query: its panel, its PromQL, and whether it is in the Disaggregation row (prefill workers only).</summary>
    internal sealed record DashboardQuery(string Panel, string Expr, bool Disaggregation);

    internal static IReadOnlyList<DashboardQuery> DashboardQueries()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(MetricsPath("grafana", "dashboards", "dynamo.json")));
        var queries = new List<DashboardQuery>();
        bool disagg = false;
        foreach (JsonElement panel in doc.RootElement.GetProperty("panels").EnumerateArray())
        {
            string title = panel.GetProperty("title").GetString()!;
            if (panel.GetProperty("type").GetString() == "row")
            {
                disagg = title.StartsWith("Disaggregation", StringComparison.Ordinal);
                continue;
            }

            foreach (JsonElement target in panel.GetProperty("targets").EnumerateArray())
            {
                queries.Add(new DashboardQuery(title, target.GetProperty("expr").GetString()!, disagg));
            }
        }

        return queries;
    }

    [GeneratedRegex(@"""[^""]*""|\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex NotNames();

    [GeneratedRegex(@"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")]
    private static partial Regex Name();

    private static readonly HashSet<string> Keywords = ["and", "or", "unless", "bool", "offset", "inf", "nan"];

    /// <summary>The metric names a PromQL expression selects: identifiers that are not functions, keywords, labels or numbers.</summary>
    internal static string[] MetricNames(string expr) =>
        [.. Name().Matches(NotNames().Replace(expr, " ")).Select(m => m.Groups[1].Value).Where(n => !Keywords.Contains(n.ToLowerInvariant())).Distinct()];

    [Fact]
    public void MetricNames_OfDashboardShapes_AreTheSelectedMetricsOnly()
    {
        Assert.Equal(["dynamo_frontend_time_to_first_token_seconds_bucket"],
            MetricNames("histogram_quantile(0.50, sum by (le, model) (rate(dynamo_frontend_time_to_first_token_seconds_bucket[$__rate_interval])))"));
        Assert.Equal(["dynamo_component_kv_blocks_used", "dynamo_component_kv_blocks_total"],
            MetricNames("100 * sum(dynamo_component_kv_blocks_used) / sum(dynamo_component_kv_blocks_total)"));
        Assert.Equal(["dynamo_component_waiting_requests"], MetricNames("sum by (instance) (dynamo_component_waiting_requests{endpoint=~\".*prefill.*\"})"));
        Assert.All(DashboardQueries(), q => Assert.NotEmpty(MetricNames(q.Expr)));
    }

    [Fact]
    public async Task Run_OneProcess_PrometheusGetsEveryDashboardSeriesOutsideDisaggregationFromItsOneMetricsEndpoint()
    {
        int port = LoopbackServers.FreePort();
        await using DynamoProcess run = DynamoProcess.Start(["run", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--threads", "1", "--kv-cache-memory", "16000000"]);
        await run.WaitForLineAsync("OpenAI-compatible API on", 180);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) };

        await using PrometheusServer prometheus = await PrometheusServer.StartAsync(self => PrometheusServer.RenderConfig(MetricsPath("prometheus.yml"), new Dictionary<string, string[]>
        {
            ["dynamo-frontend"] = [$"127.0.0.1:{port}"],
            ["dynamo-workers"] = [],
            ["prometheus"] = [self],
        }));
        await prometheus.WaitForTargetsUpAsync("dynamo-frontend", 1);

        // Requests before and after a scrape that saw them: every rate then has an increase to show.
        await ChatAsync(http, "dynamo-tiny", 3);
        await prometheus.WaitForQueryAsync("dynamo_frontend_output_tokens_total", r => r.Count == 1 && r[0].Value > 0, "first requests scraped");
        await ChatAsync(http, "dynamo-tiny", 3);

        string metrics = await http.GetStringAsync("metrics");
        AssertNoDuplicateSeries(metrics);
        DashboardQuery[] queries = [.. DashboardQueries().Where(q => !q.Disaggregation)];
        HashSet<string> exported = SampleNames(metrics);
        Assert.All(queries.SelectMany(q => MetricNames(q.Expr)), name => Assert.True(exported.Contains(name), $"the dashboard queries {name}; dynamo run's /metrics has no sample of it:\n{metrics}"));

        // The in-process worker is one worker: its instance is the worker_id of the frontend's per-worker series.
        string instance = Regex.Match(metrics, @"dynamo_component_running_requests\{[^}]*instance=""([0-9a-f]+)""").Groups[1].Value;
        Assert.Matches($@"dynamo_frontend_worker_routed_requests_total\{{model=""dynamo-tiny"",worker_id=""{instance}""\}} 6\n", metrics);
        Assert.Matches($@"dynamo_frontend_worker_kv_blocks_total\{{[^}}]*worker_id=""{instance}""[^}}]*\}} [1-9]", metrics);

        await AssertSensibleAsync(prometheus, queries);
    }

    [Fact]
    public async Task FrontendAndDecodeAndPrefillWorkers_PrometheusGetsEveryDashboardSeries_FrontendShowsEachWorkersLoad()
    {
        await using LoopbackServers servers = await LoopbackServers.StartAsync(["--router-mode", "kv"]);
        HttpClient http = servers.Http;
        int port = http.BaseAddress!.Port;
        int decodePort = LoopbackServers.FreePort();
        int prefillPort = LoopbackServers.FreePort();
        string[] common = ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", Model, "--kv-cache-memory", "16000000", "--threads", "1"];
        await using DynamoProcess decode = DynamoProcess.Start([.. common, "--system-port", decodePort.ToString(), "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100"], servers.Environment);
        await using DynamoProcess prefill = DynamoProcess.Start([.. common, "--is-prefill-worker", "--system-port", prefillPort.ToString()], servers.Environment);
        await decode.WaitForLineAsync("serving dynamo.backend.generate", 180);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 180);

        await using PrometheusServer prometheus = await PrometheusServer.StartAsync(self => PrometheusServer.RenderConfig(MetricsPath("prometheus.yml"), new Dictionary<string, string[]>
        {
            ["dynamo-frontend"] = [$"127.0.0.1:{port}"],
            ["dynamo-workers"] = [$"127.0.0.1:{decodePort}", $"127.0.0.1:{prefillPort}"],
            ["prometheus"] = [self],
        }));
        await prometheus.WaitForTargetsUpAsync("dynamo-frontend", 1);
        await prometheus.WaitForTargetsUpAsync("dynamo-workers", 2);

        // The frontend routes with the prefill worker once it has seen its card: until then the decode worker prefills.
        var until = DateTime.UtcNow.AddSeconds(60);
        do
        {
            await ChatAsync(http, Model, 1);
            Assert.True(DateTime.UtcNow < until, $"no remote prefill within 60 s:\n{decode.Output}");
        }
        while (await PrometheusText.ScrapeAsync(decodePort, "dynamo_component_remote_prefills_total") < 1);

        // Each target is scraped at its own moment: both must have seen the first requests before the next ones.
        await prometheus.WaitForQueryAsync("dynamo_component_remote_prefills_total", r => r.Any(s => s.Value >= 1), "first remote prefill scraped");
        await prometheus.WaitForQueryAsync("dynamo_frontend_output_tokens_total", r => r.Count == 1 && r[0].Value > 0, "first requests scraped at the frontend");
        await ChatAsync(http, Model, 3);

        string[] scrapes = await Task.WhenAll(new[] { port, decodePort, prefillPort }.Select(p => http.GetStringAsync($"http://127.0.0.1:{p}/metrics")));
        Assert.All(scrapes, AssertNoDuplicateSeries);
        HashSet<string> exported = [.. scrapes.SelectMany(SampleNames)];
        IReadOnlyList<DashboardQuery> queries = DashboardQueries();
        Assert.All(queries.SelectMany(q => MetricNames(q.Expr)), name => Assert.True(exported.Contains(name), $"the dashboard queries {name}; no /metrics of the frontend and workers has a sample of it"));

        // The frontend's /metrics has each worker's load, labelled with the worker's instance id.
        foreach (string workerMetrics in scrapes[1..])
        {
            string instance = Regex.Match(workerMetrics, @"dynamo_component_kv_blocks_total\{[^}]*instance=""([0-9a-f]+)""").Groups[1].Value;
            await prometheus.WaitForQueryAsync($"dynamo_frontend_worker_kv_blocks_total{{job=\"dynamo-frontend\",worker_id=\"{instance}\"}}",
                r => r.Count == 1 && r[0].Value > 0, $"the frontend's view of worker {instance}");
        }

        await AssertSensibleAsync(prometheus, queries);
        await prometheus.WaitForQueryAsync($"sum(rate(dynamo_component_remote_prefills_total[{RateWindow}]))", r => r.Count == 1 && r[0].Value > 0, "remote prefills/s");
    }

    /// <summary>
    /// Every query gives at least one series with a number (a rate with increases to divide) at least
    /// <c>min</c>, and every number within what it measures; throughput, requests, latencies, prefix hits and
    /// routing above 0. A series may be NaN (Grafana leaves a gap): a worker with no prompt looked up in the
    /// window has no hit rate.
    /// </summary>
    private static async Task AssertSensibleAsync(PrometheusServer prometheus, IEnumerable<DashboardQuery> queries)
    {
        foreach (DashboardQuery q in queries)
        {
            string expr = q.Expr.Replace("$__rate_interval", RateWindow, StringComparison.Ordinal);
            (double min, double max) = q.Panel switch
            {
                "Output tokens/s" or "Requests/s" or "Requests routed per worker (frontend)" => (double.Epsilon, 1e6),
                _ when q.Panel.StartsWith("Time to first token", StringComparison.Ordinal) => (double.Epsilon, 120),
                _ when q.Panel.StartsWith("Inter-token latency", StringComparison.Ordinal) => (double.Epsilon, 10),
                "KV cache usage" => (0, 100),
                "Prefix cache hit rate" => (double.Epsilon, 1),
                _ => (0, 1e12),
            };
            await prometheus.WaitForQueryAsync(expr, r => r.Any(s => s.Value >= min) && r.All(s => double.IsNaN(s.Value) || (s.Value >= 0 && s.Value <= max)),
                $"panel '{q.Panel}' (values in [{min}, {max}])");
        }
    }

    /// <summary>The names with at least one sample in a Prometheus text exposition.</summary>
    private static HashSet<string> SampleNames(string metrics) =>
        [.. metrics.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l => l[..l.IndexOfAny(['{', ' '])])];

    /// <summary>One # TYPE per family and no two samples with the same name and labels.</summary>
    private static void AssertNoDuplicateSeries(string metrics)
    {
        string[] lines = metrics.Split('\n');
        string[] types = [.. lines.Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' ')[2])];
        Assert.Empty(types.GroupBy(t => t).Where(g => g.Count() > 1).Select(g => g.Key));
        string[] series = [.. lines.Where(l => l.Length > 0 && l[0] != '#').Select(l => l[..l.LastIndexOf(' ')])];
        Assert.Empty(series.GroupBy(s => s).Where(g => g.Count() > 1).Select(g => g.Key));
    }

    private static int _requests;

    private static async Task ChatAsync(HttpClient http, string model, int count)
    {
        // A prefix every request shares (its full blocks come from the prefix cache after the first), then a tail
        // of its own (more than the decode worker's --max-local-prefill-length of uncached tokens); about 150 tokens
        // with the tiny models' tokenizer, within the test model's context of 256.
        string prefix = string.Join(' ', Enumerable.Range(0, 12).Select(i => $"word{i}"));
        for (int i = 0; i < count; i++)
        {
            int n = Interlocked.Increment(ref _requests);
            string prompt = $"{prefix} and then request {n} asks about {string.Join(' ', Enumerable.Range(0, 4).Select(j => $"tail{n}x{j}"))}";
            string body = JsonSerializer.Serialize(new { model, messages = new[] { new { role = "user", content = prompt } }, stream = true, max_tokens = 8 });
            using HttpResponseMessage response = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            string sse = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, sse);
            Assert.EndsWith("data: [DONE]", sse.TrimEnd());
        }
    }
}
