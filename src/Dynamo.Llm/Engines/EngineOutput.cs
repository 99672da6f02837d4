using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Engines;

/// <summary>
/// One item of a request's output stream: the tokens generated since the previous item (usually one),
/// their log-probabilities when asked for, and the finish reason on the last item. The first item also
/// says how many prompt tokens were found in the prefix cache.
/// </summary>
public sealed record EngineOutput
{
    public required IReadOnlyList<int> TokenIds { get; init; }

    /// <summary>Log-probability of each token of <see cref="TokenIds"/> (when the request asked for logprobs).</summary>
    public IReadOnlyList<float>? Logprobs { get; init; }

    /// <summary>The most likely alternatives at each position (when the request asked for top_logprobs).</summary>
    public IReadOnlyList<IReadOnlyList<TokenLogprob>>? TopLogprobs { get; init; }

    /// <summary>Set on the last item of the stream.</summary>
    public FinishReason? FinishReason { get; init; }

    /// <summary>Prompt tokens of the request.</summary>
    public int PromptTokens { get; init; }

    /// <summary>Prompt tokens whose prefill was skipped because their KV blocks were cached.</summary>
    public int CachedTokens { get; init; }

    /// <summary>Prompt tokens whose keys and values came from another engine (<see cref="EngineRequest.Kv"/>, or delivered to <see cref="EngineRequest.DeferredKv"/>).</summary>
    public int ImportedTokens { get; init; }

    /// <summary>On the last output of a request with <see cref="EngineRequest.ExportKv"/>: the KV of its computed tokens.</summary>
    public KvTransferPayload? Kv { get; init; }

    /// <summary>
    /// On the last output of a request with <see cref="EngineRequest.PushKvTo"/> whose engine pushed the KV itself (in
    /// parts, one per tensor-parallel rank): how that went. <see cref="Kv"/> is then null.
    /// </summary>
    public KvPushResult? KvPushed { get; init; }
}
