using System.Diagnostics;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Observability;

namespace Dynamo.Frontend.Http;

/// <summary>The per-token metrics of one response (tokens, time to first token, inter-token latency per choice), and the trace's token count.</summary>
internal sealed class TokenMetrics(FrontendMetrics metrics, RequestTrace trace, int choices)
{
    private readonly long[] _lastToken = new long[choices];

    public void Observe(in ChoiceEvent e)
    {
        if (e.NewTokens == 0)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        trace.CompletionTokens += e.NewTokens;
        metrics.OutputTokensTotal.WithLabels(trace.Model).Inc(e.NewTokens);
        if (trace.TimeToFirstToken is null)
        {
            trace.TimeToFirstToken = Stopwatch.GetElapsedTime(trace.Start, now);
            metrics.TimeToFirstToken.WithLabels(trace.Model).Observe(trace.TimeToFirstToken.Value.TotalSeconds);
            metrics.Queued.WithLabels(trace.Model).Dec();
            trace.Queued = false;
        }

        if (_lastToken[e.Index] != 0)
        {
            double gap = Stopwatch.GetElapsedTime(_lastToken[e.Index], now).TotalSeconds / e.NewTokens;
            for (int k = 0; k < e.NewTokens; k++)
            {
                metrics.InterTokenLatency.WithLabels(trace.Model).Observe(gap);
            }
        }

        _lastToken[e.Index] = now;
    }
}
