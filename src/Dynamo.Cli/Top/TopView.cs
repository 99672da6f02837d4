using Spectre.Console;
using Spectre.Console.Rendering;

namespace Dynamo.Cli.Top;

/// <summary>
/// What <c>dynamo top</c> draws from two reads of <c>/metrics</c>: one row per worker and a line for the frontend and
/// its router. Gauges are the latest read's; rates (tok/s, req/s, routed/s, TTFT and ITL means) are over the interval
/// between the two reads, and "-" before there are two or where the metrics do not carry the figure. A worker's
/// share is its part of the requests routed during the interval (of all it was routed since the start when none was).
/// </summary>
internal static class TopView
{
    public static IRenderable Render(Uri url, MetricsScrape? previous, MetricsScrape current, string? problem = null)
    {
        double? seconds = previous is null ? null : (current.At - previous.At).TotalSeconds;
        double? Rate(double now, double? before) => seconds is > 0 && before is double b ? Math.Max(0, now - b) / seconds.Value : null;

        var workers = new Table().Border(TableBorder.Simple).Title($"dynamo top  {Markup.Escape(url.ToString())}  rates over {Formatted(seconds, "0.0")} s");
        foreach (string column in new[] { "worker", "role", "model", "running", "waiting", "KV %", "prefix hit", "tok/s", "routed", "share" })
        {
            workers.AddColumn(new TableColumn(column) { Alignment = column is "worker" or "role" or "model" ? Justify.Left : Justify.Right });
        }

        var before = previous?.Workers.ToDictionary(w => w.Id, StringComparer.Ordinal) ?? [];
        double routedInInterval = current.Workers.Sum(w => w.Routed - (before.GetValueOrDefault(w.Id)?.Routed ?? 0));
        double routedAll = current.Workers.Sum(w => w.Routed);
        foreach (WorkerSample w in current.Workers)
        {
            WorkerSample? b = before.GetValueOrDefault(w.Id);
            double? share = routedInInterval > 0 && previous is not null ? (w.Routed - (b?.Routed ?? 0)) / routedInInterval
                : routedAll > 0 ? w.Routed / routedAll : null;
            workers.AddRow(
                Markup.Escape(w.Id), Markup.Escape(w.Role), Markup.Escape(w.Model),
                Formatted(w.Running, "0"), Formatted(w.Waiting, "0"), Formatted(w.KvUsagePercent, "0.0"),
                Formatted(w.PrefixHitRate * 100, "0.0") + (w.PrefixHitRate is null ? "" : "%"),
                Formatted(w.OutputTokens is double t ? Rate(t, b is null ? 0 : b.OutputTokens) : null, "0.0"),
                Formatted(w.Routed, "0"), Formatted(share * 100, "0") + (share is null ? "" : "%"));
        }

        if (current.Workers.Count == 0)
        {
            workers.Caption("no workers registered with this frontend yet");
        }

        double? ttft = Mean(current.TtftSum, current.TtftCount, previous?.TtftSum, previous?.TtftCount);
        double? itl = Mean(current.ItlSum, current.ItlCount, previous?.ItlSum, previous?.ItlCount);
        double? routedPerSecond = Rate(routedAll, previous?.Workers.Sum(w => w.Routed));
        string frontend =
            $"frontend  req/s {Formatted(Rate(current.Requests, previous?.Requests), "0.0")}  tok/s {Formatted(Rate(current.OutputTokens, previous?.OutputTokens), "0.0")}"
            + $"  inflight {Formatted(current.Inflight, "0")}  queued {Formatted(current.QueuedAdmission, "0")} admission, {Formatted(current.QueuedWorker, "0")} at workers"
            + $"  TTFT {Formatted(ttft * 1000, "0.0")} ms  ITL {Formatted(itl * 1000, "0.0")} ms  rejected {Formatted(current.Rejected, "0")}";
        string router =
            $"router    routed/s {Formatted(routedPerSecond, "0.0")}  KV decisions/s {Formatted(Rate(current.RouterDecisions, previous?.RouterDecisions), "0.0")}"
            + $"  KV router queue {Formatted(current.RouterQueue, "0")}";
        var lines = new List<IRenderable> { workers, new Text(frontend), new Text(router) };
        if (problem is not null)
        {
            lines.Add(new Markup($"[red]{Markup.Escape(problem)}[/]"));
        }

        return new Rows(lines);
    }

    private static double? Mean(double sum, double count, double? sumBefore, double? countBefore)
    {
        if (sumBefore is double s && countBefore is double c)
        {
            return count - c > 0 ? (sum - s) / (count - c) : null;
        }

        return count > 0 ? sum / count : null;
    }

    private static string Formatted(double? value, string format) => value is double v ? MetricsScrape.Format(v, format) : "-";
}
