using System.Diagnostics;
using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Engines;

/// <summary>A tokenized request to an engine.</summary>
/// <param name="Id">Unique among the engine's live requests; <see cref="IEngine.Cancel"/> names it.</param>
/// <param name="PromptTokens">At least one token.</param>
/// <param name="Sampling">How tokens are chosen and when generation stops (stop strings are applied by the caller, on text).</param>
public sealed record EngineRequest(string Id, IReadOnlyList<int> PromptTokens, SamplingParams Sampling)
{
    /// <summary>
    /// Keys and values of the prompt's first tokens computed by another engine (disaggregated decode): they
    /// are written into this engine's blocks and not prefilled again. If the KV cannot be placed (no free
    /// blocks, incompatible layout) the engine prefills those tokens itself; the output is the same.
    /// </summary>
    public KvTransferPayload? Kv { get; init; }

    /// <summary>
    /// The KV of the prompt's first tokens will arrive after submission (disaggregated decode): the engine reserves
    /// their blocks and parks the request until it is delivered, or prefills them itself (see
    /// <see cref="DeferredKvImport"/>). Not with <see cref="Kv"/>; one import per request.
    /// </summary>
    public DeferredKvImport? DeferredKv { get; init; }

    /// <summary>The last output carries the keys and values of every computed token (disaggregated prefill).</summary>
    public bool ExportKv { get; init; }

    /// <summary>
    /// With <see cref="ExportKv"/>: where the KV goes. An engine whose KV store pushes it itself (tensor parallelism: each
    /// rank sends its own heads) does so and says how in <see cref="EngineOutput.KvPushed"/>; any other exports it in
    /// <see cref="EngineOutput.Kv"/> for the caller to send.
    /// </summary>
    public KvPushTarget? PushKvTo { get; init; }

    /// <summary>
    /// A migrated request: the last this many of <see cref="PromptTokens"/> are output that an earlier attempt of the
    /// request produced on another worker. They count as output for penalties and for the position of seeded
    /// draws, so the continuation is the one the first attempt would have produced; <see cref="EngineOutput.PromptTokens"/>
    /// leaves them out. <see cref="SamplingParams.MaxTokens"/> counts only what is still to generate.
    /// </summary>
    public int ResumedOutputTokens { get; init; }

    /// <summary>
    /// The span the engine's phases of this request (queue, prefill, decode) are recorded under; default: the
    /// caller's current span at submission, if any (Tracing/DynamoTracing).
    /// </summary>
    public ActivityContext TraceParent { get; init; }

    /// <summary>The prompt proper: <see cref="PromptTokens"/> less the <see cref="ResumedOutputTokens"/>.</summary>
    public int OriginalPromptLength => PromptTokens.Count - ResumedOutputTokens;
}
