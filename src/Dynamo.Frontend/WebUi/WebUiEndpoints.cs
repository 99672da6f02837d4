using System.Text.Json;
using Dynamo.Components.Registry;
using Dynamo.Frontend.Http;
using Dynamo.Runtime;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Frontend.WebUi;

/// <summary>
/// The web page at <c>/</c> (a chat playground and a live status view, one HTML file embedded in this assembly, no
/// external script) and the JSON it polls, GET <see cref="StatusPath"/>. Both are off with --no-web-ui.
/// </summary>
internal static class WebUiEndpoints
{
    public const string StatusPath = "/v1/dynamo/status";

    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using Stream stream = typeof(WebUiEndpoints).Assembly.GetManifestResourceStream("Dynamo.Frontend.WebUi.index.html")
            ?? throw new InvalidOperationException("the web page resource Dynamo.Frontend.WebUi.index.html is missing from the assembly");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    public static Task PageAsync(HttpContext context)
    {
        byte[] page = Page.Value;
        context.Response.ContentType = "text/html; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers.ContentSecurityPolicy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:";
        context.Response.ContentLength = page.Length;
        return context.Response.Body.WriteAsync(page, context.RequestAborted).AsTask();
    }

    public static Task StatusAsync(HttpContext context, ModelRegistry registry, StatusSampler sampler)
    {
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        return JsonSerializer.SerializeAsync(context.Response.Body, Build(registry, sampler), FrontendJsonContext.Default.StatusResponse, context.RequestAborted);
    }

    /// <summary>The status now: one row per (worker, rank) of every served model, the totals and the history.</summary>
    internal static StatusResponse Build(ModelRegistry registry, StatusSampler sampler)
    {
        ServedModel[] models = [.. registry.Models.Values.OrderBy(m => m.Name, StringComparer.Ordinal)];
        var reports = registry.Loads.Snapshot().ToLookup(r => r.Load.WorkerId);
        var routed = registry.Routing.Snapshot().ToDictionary(r => (r.Model, r.WorkerId), r => r.Count);
        (double overall, IReadOnlyDictionary<long, double> perWorker) = sampler.Rates();
        var workers = new List<StatusWorker>();
        foreach (ServedModel model in models)
        {
            long modelRouted = routed.Where(r => r.Key.Model == model.Name).Sum(r => r.Value);
            foreach (ModelInstance instance in model.Instances.OrderBy(i => i.InstanceId))
            {
                long count = routed.GetValueOrDefault((model.Name, instance.InstanceId));
                var row = new StatusWorker
                {
                    WorkerId = EndpointAddress.FormatId(instance.InstanceId),
                    Model = model.Name,
                    Endpoint = instance.Card.Endpoint,
                    Role = instance.Card.Role,
                    RoutedRequests = count,
                    RoutingShare = modelRouted == 0 ? 0 : Math.Round((double)count / modelRouted, 4),
                    TokensPerSecond = perWorker.GetValueOrDefault(instance.InstanceId),
                };
                WorkerLoads.Report[] ranks = [.. reports[instance.InstanceId]];
                if (ranks.Length == 0)
                {
                    workers.Add(row);
                    continue;
                }

                foreach (WorkerLoads.Report report in ranks)
                {
                    var load = report.Load;
                    workers.Add(row with
                    {
                        DpRank = load.DpRank,
                        Running = load.Running,
                        Waiting = load.Waiting,
                        KvBlocksUsed = load.KvBlocksUsed,
                        KvBlocksTotal = load.KvBlocksTotal,
                        KvUsagePercent = load.KvBlocksTotal == 0 ? 0 : Math.Round(100.0 * load.KvBlocksUsed / load.KvBlocksTotal, 2),
                        PrefixHitRate = Math.Round(load.PrefixHitRate, 4),
                        LoadReportAgeSeconds = Math.Round(registry.Loads.AgeSeconds(report), 3),
                    });
                }
            }
        }

        IReadOnlyList<StatusPoint> history = sampler.History();
        ServingTotals totals = sampler.Totals;
        long responses = totals.FirstTokens;
        return new StatusResponse
        {
            TimeMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            Models = [.. models.Select(m => new StatusModel(m.Name, m.State.FirstCard.HasChatTemplate, m.Instances.Length))],
            Workers = workers,
            OutputTokens = totals.OutputTokens,
            Responses = responses,
            TokensPerSecond = overall,
            TimeToFirstTokenMeanSeconds = responses == 0 ? null : Math.Round(TimeSpan.FromTicks(totals.FirstTokenTicks / responses).TotalSeconds, 6),
            History = history,
        };
    }
}
