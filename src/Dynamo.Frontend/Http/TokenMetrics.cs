using System.Diagnostics;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Observability;
using Prometheus;

namespace Dynamo.Frontend.Http;

/// <summary>
/// The per-token metrics of one response (tokens, time to first token, inter-token latency per choice), and the
/// trace's token count. The model's series are looked up once per response, not per token.
/// </summary>
internal sealed class TokenMetrics(FrontendMetrics metrics, RequestTrace trace, int choices)
{
    private readonly long[] _lastToken = new long[choices];
    private readonly Counter.Child _outputTokens = metrics.OutputTokensTotal.WithLabels(trace.Model);
    private readonly Histogram.Child _interTokenLatency = metrics.InterTokenLatency.WithLabels(trace.Model);

    public void Observe(in ChoiceEvent e)
    {
        if (e.NewTokens == 0)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        trace.CompletionTokens += e.NewTokens;
        _outputTokens.Inc(e.NewTokens);
        metrics.Totals.Tokens(e.NewTokens);
        if (trace.TimeToFirstToken is null)
        {
            trace.TimeToFirstToken = Stopwatch.GetElapsedTime(trace.Start, now);
            metrics.TimeToFirstToken.WithLabels(trace.Model).Observe(trace.TimeToFirstToken.Value.TotalSeconds);
            metrics.Totals.FirstToken(trace.TimeToFirstToken.Value);
            metrics.Queued.WithLabels(trace.Model, FrontendMetrics.WorkerStage).Dec();
            trace.Queued = false;
        }

        if (_lastToken[e.Index] != 0)
        {
            double gap = Stopwatch.GetElapsedTime(_lastToken[e.Index], now).TotalSeconds / e.NewTokens;
            for (int k = 0; k < e.NewTokens; k++)
            {
                _interTokenLatency.Observe(gap);
            }
        }

        _lastToken[e.Index] = now;
    }
}
