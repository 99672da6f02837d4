using System.Diagnostics;
using Dynamo.Llm.Engines;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>What one mode's simulation counts as it runs (virtual times, and the router's real decision times).</summary>
internal sealed class SimulationRecorder(int workers)
{
    private readonly List<double> _ttft = [];
    private readonly List<double> _gaps = [];
    private readonly List<double> _endToEnd = [];
    private readonly List<double> _decisionMicros = [];
    private readonly List<double> _decisionMicrosNoGc = [];
    private readonly int[] _requests = new int[workers];
    private readonly long[] _promptTokens = new long[workers];
    private int _sent;
    private int _rejected;
    private long _outputTokens;
    private long _kvEvents;
    private long _predictionError;
    private long _predictionAtStake;
    private TimeSpan _lastCompletion;

    public void Sent() => _sent++;

    /// <summary>
    /// A routing decision took <paramref name="stopwatchTicks"/> of real time; <paramref name="interrupted"/>: a garbage
    /// collection ran meanwhile (the simulation's own heap, not the router's work), or the thread waited for a CPU.
    /// </summary>
    public void Decided(long stopwatchTicks, bool interrupted)
    {
        double micros = stopwatchTicks * 1e6 / Stopwatch.Frequency;
        _decisionMicros.Add(micros);
        if (!interrupted)
        {
            _decisionMicrosNoGc.Add(micros);
        }
    }

    public void Rejected() => _rejected++;

    /// <summary>A completed request: the router's predicted cached tokens against the engine's.</summary>
    public void Predicted(int predicted, int actual)
    {
        _predictionError += Math.Abs(predicted - actual);
        _predictionAtStake += Math.Max(predicted, actual);
    }

    public void Dispatched(int worker, int promptTokens)
    {
        _requests[worker]++;
        _promptTokens[worker] += promptTokens;
    }

    public void FirstToken(TimeSpan ttft) => _ttft.Add(ttft.TotalSeconds);

    public void Gap(TimeSpan gap) => _gaps.Add(gap.TotalSeconds);

    public void KvEvent() => _kvEvents++;

    public void Completed(int outputTokens, TimeSpan endToEnd, TimeSpan at)
    {
        _outputTokens += outputTokens;
        _endToEnd.Add(endToEnd.TotalSeconds);
        _lastCompletion = at;
    }

    /// <summary>The figures, with the workers' own stats (prefix hits, preemptions) at the end of the run.</summary>
    public SimulationModeResult Result(string mode, IReadOnlyList<EngineStats> stats, TimeSpan virtualTime, TimeSpan wallTime, long events)
    {
        long query = stats.Sum(s => s.PrefixQueryTokens), hit = stats.Sum(s => s.PrefixHitTokens);
        double span = _lastCompletion.TotalSeconds;
        return new SimulationModeResult
        {
            Mode = mode,
            Requests = _sent,
            Completed = _endToEnd.Count,
            Rejected = _rejected,
            Ttft = LatencySummary.Of(_ttft),
            Itl = LatencySummary.Of(_gaps),
            EndToEnd = LatencySummary.Of(_endToEnd),
            OutputTokensPerSecond = span > 0 ? _outputTokens / span : 0,
            RequestsPerSecond = span > 0 ? _endToEnd.Count / span : 0,
            HitRate = query == 0 ? 0 : (double)hit / query,
            Preemptions = stats.Sum(s => s.Preemptions),
            RequestsPerWorker = Spread.Of(_requests.Select(r => (double)r)),
            PromptTokensPerWorker = Spread.Of(_promptTokens.Select(t => (double)t)),
            StarvedWorkers = _requests.Count(r => r == 0),
            DecisionMicros = LatencySummary.Of(_decisionMicros),
            DecisionMicrosUninterrupted = LatencySummary.Of(_decisionMicrosNoGc),
            DecisionsInterrupted = _decisionMicros.Count - _decisionMicrosNoGc.Count,
            KvEvents = _kvEvents,
            CachedTokenPredictionError = _predictionAtStake == 0 ? null : (double)_predictionError / _predictionAtStake,
            VirtualTime = virtualTime,
            WallTime = wallTime,
            Events = events,
        };
    }
}
