namespace Dynamo.Llm.Disaggregation;

/// <summary>The reasons of a <see cref="DisaggregationDecision"/> and of a decode worker's local fallback (metric labels).</summary>
public static class PrefillReasons
{
    /// <summary>Remote: the uncached prompt is longer than max-local-prefill-length and the prefill queue has room.</summary>
    public const string LongPrompt = "long_prompt";

    /// <summary>Remote: conditional disaggregation is off.</summary>
    public const string Unconditional = "unconditional";

    /// <summary>Local: the uncached prompt is at most max-local-prefill-length (or a single token).</summary>
    public const string ShortPrompt = "short_prompt";

    /// <summary>Local: max-prefill-queue-size requests already wait at the prefill workers.</summary>
    public const string QueueFull = "prefill_queue_full";

    /// <summary>Local: the prefill workers' router refused the request (none known yet, its queue full).</summary>
    public const string PrefillRejected = "prefill_rejected";

    /// <summary>Local: the decode worker does not take remote prefills (remote-prefill: false).</summary>
    public const string DecodeOptedOut = "decode_opted_out";

    /// <summary>Local (decode side): no KV blocks could be reserved for the transfer, or the engine has no KV store.</summary>
    public const string NoBlocks = "no_blocks";

    /// <summary>Local (decode side): the prefill worker failed, left, stalled or answered without the KV.</summary>
    public const string PrefillFailed = "prefill_failed";

    /// <summary>Local (decode side): the prefill worker serves other weights under the same model name.</summary>
    public const string ModelMismatch = "model_mismatch";

    /// <summary>Local (decode side): the KV arrived but could not be imported (another layout, another model).</summary>
    public const string ImportRefused = "import_refused";
}
