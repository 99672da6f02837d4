using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Engines;

/// <summary>
/// A serving engine: requests in, token streams out, with continuous batching inside. The built-in
/// inference engine, the mocker and the echo engine implement it, each over one <see cref="EngineCore{TState}"/>
/// (the request bookkeeping they share); the worker glue serves it on the request plane. What every
/// implementation must do is pinned by the contract tests (tests/.../Llm/Engines/EngineContractTests.cs).
/// </summary>
public interface IEngine : IAsyncDisposable
{
    /// <summary>Name shown in logs and metrics ("dynamo", "mocker", "echo").</summary>
    string Name { get; }

    /// <summary>Tokens per KV block.</summary>
    int BlockSize { get; }

    /// <summary>Context window in tokens (prompt and output).</summary>
    int ContextLength { get; }

    /// <summary>
    /// Queues a request and returns its output stream. A request the engine can never serve (empty, too long
    /// for the context or the whole KV pool, bad sampling parameters, duplicate id, both <see cref="EngineRequest.Kv"/>
    /// and <see cref="EngineRequest.DeferredKv"/>, a <see cref="DeferredKvImport"/> already submitted) throws
    /// <see cref="ArgumentException"/> here, before anything is queued. Cancelling
    /// <paramref name="cancellationToken"/> or abandoning the enumeration cancels the request and frees its
    /// blocks; the stream then ends with <see cref="FinishReason.Cancelled"/> (when still read).
    /// </summary>
    IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default);

    /// <summary>Cancels a live request; false (and nothing happens) when no such request is live.</summary>
    bool Cancel(string requestId);

    /// <summary>The latest snapshot; cheap, any thread.</summary>
    EngineStats Stats { get; }

    /// <summary>The KV events of this engine's prefix cache (null when prefix caching is off).</summary>
    KvEventLog? KvEvents { get; }

    /// <summary>
    /// The prefix cache's whole cached set as of its latest KV event (what a router loads to resync, see
    /// Kv/README.md): taken between engine steps, so its <c>last_event_id</c> matches the event stream.
    /// An engine without prefix caching gives an empty dump.
    /// </summary>
    Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default);
}
