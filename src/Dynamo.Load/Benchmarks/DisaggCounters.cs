using Dynamo.Components.Workers;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// A deployment's disaggregation counters at one moment, summed over its workers: the decode side's remote
/// prefills, local fallbacks by reason and the KV they received (bytes; seconds as the senders timed their
/// pushes, plus a simulated link's time); the prefill side's prefills served; and the frontend's routing
/// decisions by "remote/reason" or "local/reason". A run's figures are the difference of two snapshots.
/// </summary>
internal sealed record DisaggCounters
{
    public static DisaggCounters Zero { get; } = new();

    public long RemotePrefills { get; init; }

    public long PrefillsServed { get; init; }

    public long TransferBytes { get; init; }

    public double TransferSeconds { get; init; }

    /// <summary>From asking a prefill worker to the KV's arrival, summed over remote prefills.</summary>
    public double RemotePrefillSeconds { get; init; }

    /// <summary>Decode side: requests asked to prefill remotely that prefilled locally, by reason.</summary>
    public IReadOnlyDictionary<string, long> Fallbacks { get; init; } = new Dictionary<string, long>();

    /// <summary>The frontend's decisions, by "remote/REASON" and "local/REASON".</summary>
    public IReadOnlyDictionary<string, long> Decisions { get; init; } = new Dictionary<string, long>();

    /// <summary>The sums of in-process workers' counters.</summary>
    public static DisaggCounters Of(IEnumerable<WorkerDisaggregationStats> workers)
    {
        WorkerDisaggregationStats[] all = [.. workers];
        return new DisaggCounters
        {
            RemotePrefills = all.Sum(w => w.RemotePrefills),
            PrefillsServed = all.Sum(w => w.PrefillsServed),
            TransferBytes = all.Sum(w => w.TransferBytesReceived),
            TransferSeconds = all.Sum(w => w.TransferSeconds),
            RemotePrefillSeconds = all.Sum(w => w.RemotePrefillSeconds),
            Fallbacks = Sum(all.SelectMany(w => w.LocalFallbacks)),
        };
    }

    /// <summary>The sums of worker processes' counters, from the text of their <c>/metrics</c> (the names of <c>SystemStatusServer</c>).</summary>
    public static DisaggCounters OfMetrics(IEnumerable<string> metricsTexts)
    {
        PrometheusSample[] all = [.. metricsTexts.SelectMany(PrometheusText.Parse)];
        double Total(string name) => all.Where(s => s.Name == name).Sum(s => s.Value);
        return new DisaggCounters
        {
            RemotePrefills = (long)Total("dynamo_component_remote_prefills_total"),
            PrefillsServed = (long)Total("dynamo_component_prefills_served_total"),
            TransferBytes = (long)Total("dynamo_component_kv_transfer_received_bytes_total"),
            TransferSeconds = Total("dynamo_component_kv_transfer_seconds_total"),
            RemotePrefillSeconds = Total("dynamo_component_remote_prefill_seconds_total"),
            Fallbacks = Sum(all.Where(s => s.Name == "dynamo_component_local_prefills_total").Select(s => (s.Label("reason"), (long)s.Value))),
        };
    }

    /// <summary>The frontend's decisions for <paramref name="model"/>, from the text of its <c>/metrics</c>.</summary>
    public static IReadOnlyDictionary<string, long> DecisionsOf(string metricsText, string model) => Sum(
        PrometheusText.Parse(metricsText)
            .Where(s => s.Name == "dynamo_frontend_disagg_decisions_total" && s.Label("model") == model)
            .Select(s => ($"{s.Label("prefill")}/{s.Label("reason")}", (long)s.Value)));

    /// <summary>What happened between <paramref name="before"/> and this snapshot.</summary>
    public DisaggCounters Since(DisaggCounters before) => new()
    {
        RemotePrefills = RemotePrefills - before.RemotePrefills,
        PrefillsServed = PrefillsServed - before.PrefillsServed,
        TransferBytes = TransferBytes - before.TransferBytes,
        TransferSeconds = TransferSeconds - before.TransferSeconds,
        RemotePrefillSeconds = RemotePrefillSeconds - before.RemotePrefillSeconds,
        Fallbacks = Difference(Fallbacks, before.Fallbacks),
        Decisions = Difference(Decisions, before.Decisions),
    };

    /// <summary>Remote decisions of the frontend.</summary>
    public long RemoteDecisions => Decisions.Where(p => p.Key.StartsWith("remote/", StringComparison.Ordinal)).Sum(p => p.Value);

    /// <summary>Mean time of one KV transfer, in seconds (0 without any).</summary>
    public double MeanTransferSeconds => RemotePrefills > 0 ? TransferSeconds / RemotePrefills : 0;

    /// <summary>Mean time from asking a prefill worker to the KV's arrival, in seconds (0 without any).</summary>
    public double MeanRemotePrefillSeconds => RemotePrefills > 0 ? RemotePrefillSeconds / RemotePrefills : 0;

    /// <summary>KV bytes received per second of transfer, in GB/s (10^9 bytes; 0 without any).</summary>
    public double TransferGbps => TransferSeconds > 0 ? TransferBytes / TransferSeconds / 1e9 : 0;

    private static Dictionary<string, long> Sum(IEnumerable<(string Key, long Count)> counts)
    {
        var sums = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach ((string key, long count) in counts)
        {
            sums[key] = sums.GetValueOrDefault(key) + count;
        }

        return sums;
    }

    private static Dictionary<string, long> Difference(IReadOnlyDictionary<string, long> after, IReadOnlyDictionary<string, long> before) =>
        after.Select(p => (p.Key, Count: p.Value - before.GetValueOrDefault(p.Key))).Where(p => p.Count != 0).ToDictionary(p => p.Key, p => p.Count, StringComparer.Ordinal);
}
