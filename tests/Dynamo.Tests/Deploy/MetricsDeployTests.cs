using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace Dynamo.Tests.Deploy;

public partial class MetricsDeployTests
{
    private static string Metrics(params string[] parts) => Path.Combine([RepoPaths.Root, "deploy", "metrics", .. parts]);

    /// <summary>The names of issue 5 ("Observability"), with the series a histogram adds.</summary>
    private static readonly HashSet<string> KnownMetrics =
    [
        "dynamo_frontend_requests_total", "dynamo_frontend_inflight_requests", "dynamo_frontend_queued_requests",
        .. Histogram("dynamo_frontend_time_to_first_token_seconds"), .. Histogram("dynamo_frontend_inter_token_latency_seconds"),
        .. Histogram("dynamo_frontend_request_duration_seconds"), .. Histogram("dynamo_frontend_input_sequence_tokens"),
        .. Histogram("dynamo_frontend_output_sequence_tokens"), "dynamo_frontend_output_tokens_total",
        "dynamo_frontend_model_cancellation_total", "dynamo_frontend_model_rejection_total",
        "dynamo_component_running_requests", "dynamo_component_waiting_requests", "dynamo_component_kv_cache_usage_percent",
        "dynamo_component_kv_blocks_used", "dynamo_component_kv_blocks_total",
        "dynamo_component_prefix_cache_hits_total", "dynamo_component_prefix_cache_queries_total",
        "dynamo_component_remote_prefills_total", "dynamo_component_local_prefills_total", "dynamo_component_kv_transfer_received_bytes_total",
        "dynamo_component_kv_transfer_seconds_total", "dynamo_frontend_disagg_decisions_total", "dynamo_frontend_disagg_remote_prefills_total",
        "dynamo_frontend_disagg_route_wait_seconds_sum", "dynamo_frontend_disagg_route_wait_seconds_count",
        "dynamo_frontend_disagg_prefill_seconds_sum", "dynamo_frontend_disagg_transfer_seconds_sum",
        "dynamo_frontend_worker_routed_requests_total", "dynamo_frontend_worker_running_requests", "dynamo_frontend_worker_waiting_requests",
        "dynamo_frontend_worker_kv_cache_usage_percent", "dynamo_frontend_worker_output_tokens_total",
    ];

    /// <summary>What the guides' panels show: each must be used by some panel.</summary>
    private static readonly string[] RequiredMetrics =
    [
        "dynamo_frontend_output_tokens_total", "dynamo_frontend_requests_total", "dynamo_frontend_inflight_requests",
        "dynamo_frontend_queued_requests", "dynamo_component_running_requests", "dynamo_component_waiting_requests",
        "dynamo_frontend_time_to_first_token_seconds_bucket", "dynamo_frontend_inter_token_latency_seconds_bucket",
        "dynamo_component_kv_cache_usage_percent", "dynamo_component_kv_blocks_used", "dynamo_component_kv_blocks_total",
        "dynamo_component_prefix_cache_hits_total", "dynamo_component_prefix_cache_queries_total",
        "dynamo_frontend_worker_routed_requests_total",
    ];

    private static string[] Histogram(string name) => [name + "_bucket", name + "_sum", name + "_count"];

    [GeneratedRegex(@"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")]
    private static partial Regex Identifier();

    private static YamlMappingNode LoadYaml(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    private static YamlNode Get(YamlMappingNode map, string key) => map.Children[new YamlScalarNode(key)];

    [Fact]
    public void Dashboard_EveryPanelQueriesOnlyKnownMetricsAndTogetherTheGuidesPanels()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Metrics("grafana", "dashboards", "dynamo.json")));
        JsonElement root = doc.RootElement;
        Assert.Equal("dynamo", root.GetProperty("uid").GetString());
        var used = new HashSet<string>();
        JsonElement[] panels = [.. root.GetProperty("panels").EnumerateArray()];
        Assert.True(panels.Length >= 6);
        Assert.Equal(panels.Length, panels.Select(p => p.GetProperty("id").GetInt32()).Distinct().Count());
        foreach (JsonElement panel in panels)
        {
            string title = panel.GetProperty("title").GetString()!;
            if (panel.GetProperty("type").GetString() == "row")
            {
                continue;
            }

            Assert.Equal("prometheus", panel.GetProperty("datasource").GetProperty("uid").GetString());
            JsonElement[] targets = [.. panel.GetProperty("targets").EnumerateArray()];
            Assert.NotEmpty(targets);
            foreach (JsonElement target in targets)
            {
                string expr = target.GetProperty("expr").GetString()!;
                string[] metrics = [.. Identifier().Matches(expr).Select(m => m.Value).Where(v => v.StartsWith("dynamo", StringComparison.Ordinal))];
                Assert.True(metrics.Length > 0, $"{title}: '{expr}' queries no dynamo metric");
                Assert.All(metrics, m => Assert.True(KnownMetrics.Contains(m), $"{title}: unknown metric {m} in '{expr}'"));
                Assert.Equal(expr.Count(c => c == '('), expr.Count(c => c == ')'));
                used.UnionWith(metrics);
            }
        }

        Assert.All(RequiredMetrics, m => Assert.Contains(m, used));
        Assert.Contains(panels, p => p.GetProperty("type").GetString() == "row" && p.GetProperty("title").GetString()!.StartsWith("Disaggregation", StringComparison.Ordinal));
        Assert.All(["dynamo_component_remote_prefills_total", "dynamo_component_local_prefills_total", "dynamo_component_kv_transfer_received_bytes_total", "dynamo_frontend_disagg_decisions_total"],
            m => Assert.Contains(m, used));
        Assert.Contains(panels, p => p.GetProperty("targets").EnumerateArray().Any(t => t.GetProperty("expr").GetString()!.StartsWith("histogram_quantile(0.99,", StringComparison.Ordinal)));
    }

    [Fact]
    public void Provisioning_DatasourceUidIsTheDashboardsAndDashboardsFolderIsMounted()
    {
        YamlMappingNode datasource = (YamlMappingNode)((YamlSequenceNode)Get(LoadYaml(Metrics("grafana", "provisioning", "datasources", "prometheus.yml")), "datasources")).Children.Single();
        Assert.Equal("prometheus", Get(datasource, "uid").ToString());
        Assert.Equal("http://prometheus:9090", Get(datasource, "url").ToString());

        YamlMappingNode provider = (YamlMappingNode)((YamlSequenceNode)Get(LoadYaml(Metrics("grafana", "provisioning", "dashboards", "dynamo.yml")), "providers")).Children.Single();
        string path = Get((YamlMappingNode)Get(provider, "options"), "path").ToString();

        YamlMappingNode services = (YamlMappingNode)Get(LoadYaml(Metrics("docker-compose.yml")), "services");
        string[] grafanaVolumes = [.. ((YamlSequenceNode)Get((YamlMappingNode)Get(services, "grafana"), "volumes")).Children.Select(v => v.ToString())];
        Assert.Contains($"./grafana/dashboards:{path}:ro", grafanaVolumes);
        Assert.Contains("./grafana/provisioning:/etc/grafana/provisioning:ro", grafanaVolumes);
        string[] prometheusVolumes = [.. ((YamlSequenceNode)Get((YamlMappingNode)Get(services, "prometheus"), "volumes")).Children.Select(v => v.ToString())];
        Assert.Contains("./prometheus.yml:/etc/prometheus/prometheus.yml:ro", prometheusVolumes);
    }

    [Fact]
    public void PrometheusConfig_ScrapesFrontendAndWorkers_AndPromtoolAcceptsIt()
    {
        string path = Metrics("prometheus.yml");
        YamlMappingNode config = LoadYaml(path);
        var jobs = ((YamlSequenceNode)Get(config, "scrape_configs")).Children.Cast<YamlMappingNode>()
            .ToDictionary(j => Get(j, "job_name").ToString(), j => ((YamlSequenceNode)Get(j, "static_configs")).Children.Cast<YamlMappingNode>()
                .SelectMany(s => ((YamlSequenceNode)Get(s, "targets")).Children.Select(t => t.ToString())).ToArray());
        Assert.Equal(["host.docker.internal:8000"], jobs["dynamo-frontend"]);
        Assert.Contains("host.docker.internal:8081", jobs["dynamo-workers"]);
        Assert.All(jobs.Values.SelectMany(t => t), t => Assert.Matches(@"^[a-z0-9.\-]+:\d+$", t));
        Assert.Matches(@"^\d+s$", Get((YamlMappingNode)Get(config, "global"), "scrape_interval").ToString());

        string promtool = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/usr/bin").Select(d => Path.Combine(d, "promtool")).FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"promtool not found: {PrometheusServer.InstallHint}");
        var start = new ProcessStartInfo(promtool, ["check", "config", path]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"promtool check config {path}: {output}");
    }
}
