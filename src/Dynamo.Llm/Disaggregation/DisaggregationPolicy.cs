namespace Dynamo.Llm.Disaggregation;

/// <summary>
/// The conditional disaggregation rule, a pure function: a request prefills remotely only when its uncached
/// part (prompt tokens less the decode worker's prefix hit) is longer than max-local-prefill-length AND fewer
/// than max-prefill-queue-size requests wait at the prefill workers; with conditional disaggregation off,
/// always (while a prefill worker exists). A prompt of one token always prefills locally: the decode worker
/// computes at least the last prompt token itself.
/// </summary>
public static class DisaggregationPolicy
{
    /// <param name="settings">The thresholds in force.</param>
    /// <param name="promptTokens">The request's prompt tokens.</param>
    /// <param name="decodeCachedTokens">Prompt tokens the decode worker is expected to hold in its prefix cache.</param>
    /// <param name="prefillQueueDepth">Requests waiting at the prefill workers.</param>
    /// <param name="prefillWorkers">Prefill workers that may take it.</param>
    public static DisaggregationDecision Decide(DisaggregationSettings settings, int promptTokens, int decodeCachedTokens, int prefillQueueDepth, int prefillWorkers)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (prefillWorkers <= 0)
        {
            return new DisaggregationDecision(false, PrefillReasons.PrefillRejected);
        }

        if (promptTokens < 2)
        {
            return new DisaggregationDecision(false, PrefillReasons.ShortPrompt);
        }

        if (!settings.ConditionalDisagg)
        {
            return new DisaggregationDecision(true, PrefillReasons.Unconditional);
        }

        int uncached = promptTokens - Math.Clamp(decodeCachedTokens, 0, promptTokens);
        if (uncached <= settings.MaxLocalPrefillLength)
        {
            return new DisaggregationDecision(false, PrefillReasons.ShortPrompt);
        }

        return prefillQueueDepth >= settings.MaxPrefillQueueSize
            ? new DisaggregationDecision(false, PrefillReasons.QueueFull)
            : new DisaggregationDecision(true, PrefillReasons.LongPrompt);
    }
}
