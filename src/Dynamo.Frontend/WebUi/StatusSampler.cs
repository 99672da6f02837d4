using Dynamo.Components.Processing;

namespace Dynamo.Frontend.WebUi;

/// <summary>
/// Samples the frontend's totals (<see cref="ServingTotals"/>) and the tokens each worker generated
/// (<see cref="RoutingCounters.GeneratedSnapshot"/>) once a second and keeps the last <see cref="HistorySeconds"/>
/// seconds, from which the status endpoint reads throughput and TTFT over time. One loop writes; readers take the
/// lock for a copy (the history is small).
/// </summary>
internal sealed class StatusSampler : IAsyncDisposable
{
    /// <summary>How much history the status endpoint returns (5 minutes).</summary>
    public const int HistorySeconds = 300;

    /// <summary>Seconds the current rates (tokens/s overall and per worker) are averaged over.</summary>
    public const int RateWindowSeconds = 5;

    private readonly ServingTotals _totals;
    private readonly RoutingCounters _routing;
    private readonly TimeProvider _time;
    private readonly Queue<Sample> _samples = new();
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public StatusSampler(ServingTotals totals, RoutingCounters routing, TimeProvider? time = null)
    {
        _totals = totals;
        _routing = routing;
        _time = time ?? TimeProvider.System;
        SampleNow();
        _loop = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
    }

    /// <summary>The totals sampled.</summary>
    public ServingTotals Totals => _totals;

    /// <summary>The history, oldest first, one point per sampled second.</summary>
    public IReadOnlyList<StatusPoint> History()
    {
        Sample[] samples = Copy();
        var points = new List<StatusPoint>(samples.Length);
        for (int i = 1; i < samples.Length; i++)
        {
            Sample a = samples[i - 1], b = samples[i];
            double seconds = Math.Max((b.At - a.At).TotalSeconds, 1e-3);
            long first = b.FirstTokens - a.FirstTokens;
            points.Add(new StatusPoint(
                b.At.ToUnixTimeMilliseconds(),
                Math.Round((b.OutputTokens - a.OutputTokens) / seconds, 3),
                first == 0 ? null : Math.Round(TimeSpan.FromTicks((b.FirstTokenTicks - a.FirstTokenTicks) / first).TotalSeconds, 6)));
        }

        return points;
    }

    /// <summary>Tokens/s over the last <see cref="RateWindowSeconds"/> seconds: overall, and per worker id.</summary>
    public (double Overall, IReadOnlyDictionary<long, double> PerWorker) Rates()
    {
        Sample[] samples = Copy();
        var perWorker = new Dictionary<long, double>();
        if (samples.Length < 2)
        {
            return (0, perWorker);
        }

        Sample last = samples[^1], from = samples[Math.Max(0, samples.Length - 1 - RateWindowSeconds)];
        double seconds = Math.Max((last.At - from.At).TotalSeconds, 1e-3);
        foreach ((long worker, long tokens) in last.PerWorker)
        {
            perWorker[worker] = Math.Round((tokens - from.PerWorker.GetValueOrDefault(worker)) / seconds, 3);
        }

        return (Math.Round((last.OutputTokens - from.OutputTokens) / seconds, 3), perWorker);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), _time);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            SampleNow();
        }
    }

    private void SampleNow()
    {
        var sample = new Sample(_time.GetUtcNow(), _totals.OutputTokens, _totals.FirstTokens, _totals.FirstTokenTicks, _routing.GeneratedSnapshot());
        lock (_lock)
        {
            _samples.Enqueue(sample);
            while (_samples.Count > HistorySeconds + 1)
            {
                _samples.Dequeue();
            }
        }
    }

    private Sample[] Copy()
    {
        lock (_lock)
        {
            return [.. _samples];
        }
    }

    private sealed record Sample(DateTimeOffset At, long OutputTokens, long FirstTokens, long FirstTokenTicks, IReadOnlyDictionary<long, long> PerWorker);
}
