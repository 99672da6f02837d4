using System.Text.RegularExpressions;
using Dynamo.Components.Workers;
using Dynamo.Runtime;

namespace Dynamo.Tests.Frontend.Observability;

/// <summary>The per-worker series of the process that routes: the frontend's /metrics, or a Processor component's (<see cref="WorkerLoadMetricsThroughProcessorTests"/>).</summary>
public class WorkerLoadMetricsTests
{
    /// <summary>Whether the frontend relays to a Processor component, which then routes and exports them.</summary>
    private protected virtual bool ThroughProcessor => false;

    private static readonly EngineWorkerOptions FastReports = EngineWorkerOptions.Default with { LoadMetricsInterval = TimeSpan.FromMilliseconds(50) };

    private static async Task<string> WaitForMetricsAsync(FrontendHarness h, Func<string, bool> accept, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            string metrics = await h.RoutingMetricsAsync();
            if (accept(metrics))
            {
                return metrics;
            }

            Assert.True(DateTime.UtcNow < until, $"{what} not on /metrics within 30 s:\n{metrics}");
            await Task.Delay(20);
        }
    }

    private static bool HasLoad(string metrics, string workerId) =>
        Regex.IsMatch(metrics, $@"^dynamo_frontend_worker_running_requests\{{model=""tiny"",endpoint=""dynamo\.backend\.generate"",worker_id=""{workerId}"",dp_rank=""0""\}} 0$", RegexOptions.Multiline);

    [Fact]
    public async Task Metrics_TwoWorkers_EachOnesLoadReportAndRoutedRequestsUnderItsIdUntilItLeaves()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: ThroughProcessor);
        TestWorker a = await h.AddWorkerAsync(FrontendHarness.Echo(), options: FastReports);
        TestWorker b = await h.AddWorkerAsync(FrontendHarness.Echo(), options: FastReports);
        await h.WaitForCandidatesAsync(2);
        for (int i = 0; i < 4; i++)
        {
            (int status, _) = await h.PostJsonAsync("/v1/completions", """{"model":"tiny","prompt":"hello","max_tokens":2}""");
            Assert.Equal(200, status);
        }

        string idA = EndpointAddress.FormatId(a.Worker!.InstanceId);
        string idB = EndpointAddress.FormatId(b.Worker!.InstanceId);
        string metrics = await WaitForMetricsAsync(h, m => HasLoad(m, idA) && HasLoad(m, idB), "both workers' load");

        // Round-robin: two requests each.
        Assert.Contains($"dynamo_frontend_worker_routed_requests_total{{model=\"tiny\",worker_id=\"{idA}\"}} 2\n", metrics);
        Assert.Contains($"dynamo_frontend_worker_routed_requests_total{{model=\"tiny\",worker_id=\"{idB}\"}} 2\n", metrics);
        Assert.Matches($@"dynamo_frontend_worker_load_report_age_seconds\{{[^}}]*worker_id=""{idA}""[^}}]*\}} \d", metrics);

        // The tokens each generated for them (what `dynamo top` turns into tokens/s per worker): together the frontend's count.
        static double Value(string text, string pattern) => double.Parse(Regex.Match(text, pattern, RegexOptions.Multiline).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        double tokensA = Value(metrics, $@"^dynamo_frontend_worker_output_tokens_total\{{worker_id=""{idA}""\}} (\d+)$");
        double tokensB = Value(metrics, $@"^dynamo_frontend_worker_output_tokens_total\{{worker_id=""{idB}""\}} (\d+)$");
        Assert.True(tokensA > 0 && tokensB > 0, metrics);
        Assert.Equal(Value(await h.Http.GetStringAsync("metrics"), @"^dynamo_frontend_output_tokens_total\{model=""tiny""\} (\d+)$"), tokensA + tokensB);

        // B leaves discovery: its load series go (its routed count stays, a counter of what was done).
        await b.DisposeAsync();
        metrics = await WaitForMetricsAsync(h, m => !m.Contains($"worker_id=\"{idB}\",dp_rank", StringComparison.Ordinal), "B's load series removed");
        Assert.True(HasLoad(metrics, idA), metrics);
        Assert.Contains($"dynamo_frontend_worker_routed_requests_total{{model=\"tiny\",worker_id=\"{idB}\"}} 2\n", metrics);
    }
}
