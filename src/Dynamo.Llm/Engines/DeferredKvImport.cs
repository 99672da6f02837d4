using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Engines;

/// <summary>
/// KV that will arrive after the request is submitted (disaggregated decode: the decode worker reserves the
/// blocks, then a prefill worker computes the prompt's first <see cref="TokenCount"/> tokens and pushes their
/// keys and values). Set on <see cref="EngineRequest.DeferredKv"/>; one per request. Every member is for any
/// thread; the engine acts on its loop.
/// <list type="bullet">
/// <item>The engine tries to reserve blocks for positions 0..<see cref="TokenCount"/>-1 and says so through
/// <see cref="Reserved"/>: true, the request is parked (holding its blocks, neither running nor waiting, never
/// scheduled) until <see cref="Deliver"/> or <see cref="Fail"/>; false (no KV store, too few free blocks,
/// <see cref="TokenCount"/> not below the prompt length), it was queued for a local prefill at once and the
/// caller should not start the remote prefill.</item>
/// <item><see cref="Deliver"/> on a parked request writes the payload into the reserved blocks and queues the
/// request with those tokens computed (<see cref="EngineOutput.ImportedTokens"/>); a payload the engine cannot
/// import (layout, dtype, length, a token count other than <see cref="TokenCount"/>) is refused
/// (<see cref="EngineStats.KvImportsRefused"/>). <see cref="Fail"/>, or a refusal, releases the blocks and
/// queues the request for a local prefill. The output is the same either way.</item>
/// <item>The first <see cref="Deliver"/> or <see cref="Fail"/> counts; a later one, or one after the request
/// ended, is a no-op. Cancelling a parked request (token, <see cref="IEngine.Cancel"/>, engine disposal)
/// releases its blocks at once. How long to wait for the payload is the caller's business: it calls
/// <see cref="Fail"/>.</item>
/// <item><see cref="Completed"/> says how it ended; both tasks always complete (a request rejected at submit
/// gives false and <see cref="KvImportStatus.Cancelled"/>), their continuations never on the engine's loop.</item>
/// </list>
/// </summary>
public sealed class DeferredKvImport
{
    /// <summary>What <see cref="_arrival"/> holds once it was used or can no longer be: later arrivals are no-ops.</summary>
    private static readonly object Closed = new();

    private readonly TaskCompletionSource<bool> _reserved = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<KvImportOutcome> _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Null until the first <see cref="Deliver"/> (a <see cref="KvTransferPayload"/>) or <see cref="Fail"/> (its reason, a string); then <see cref="Closed"/>.</summary>
    private object? _arrival;

    /// <summary>Set by the engine at submit: tells its loop that something arrived.</summary>
    private Action? _arrived;

    private int _claimed;

    /// <param name="tokenCount">Prompt tokens (positions 0..tokenCount-1) whose KV will arrive; at least 1, and below the prompt length for the engine to reserve them.</param>
    public DeferredKvImport(int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenCount, 1);
        TokenCount = tokenCount;
    }

    /// <summary>Prompt tokens (positions 0..TokenCount-1) whose KV will arrive.</summary>
    public int TokenCount { get; }

    /// <summary>
    /// True once the engine holds blocks for <see cref="TokenCount"/> tokens and parked the request waiting for
    /// <see cref="Deliver"/>; false when it could not (the request is prefilled locally, or was rejected or ended).
    /// </summary>
    public Task<bool> Reserved => _reserved.Task;

    /// <summary>How the import ended: imported, or why the engine prefilled the tokens itself, or the request ended first.</summary>
    public Task<KvImportOutcome> Completed => _completed.Task;

    /// <summary>The KV arrived: its <see cref="KvTransferLayout.TokenCount"/> should be <see cref="TokenCount"/>.</summary>
    public void Deliver(KvTransferPayload payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        Arrive(payload);
    }

    /// <summary>The KV will not arrive (the remote prefill failed, the transfer broke, the caller gave up): prefill locally.</summary>
    /// <param name="reason">One line for <see cref="KvImportOutcome.Detail"/>.</param>
    public void Fail(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        Arrive(reason);
    }

    private void Arrive(object arrival)
    {
        if (Interlocked.CompareExchange(ref _arrival, arrival, null) is null)
        {
            Volatile.Read(ref _arrived)?.Invoke();
        }
    }

    /// <summary>Marks the import as used by a request; false when another request already took it.</summary>
    internal bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;

    /// <summary>Sets what tells the engine's loop of an arrival (once the request is live, before it is queued).</summary>
    internal void Attach(Action arrived) => Interlocked.Exchange(ref _arrived, arrived);

    /// <summary>The payload or failure reason that arrived, taken once (engine loop); null when none came yet or it was taken.</summary>
    internal object? TakeArrival()
    {
        object? arrival = Volatile.Read(ref _arrival);
        if (arrival is null || arrival == Closed)
        {
            return null;
        }

        Interlocked.Exchange(ref _arrival, Closed);
        return arrival;
    }

    /// <summary>The blocks are held and the request parked (engine loop).</summary>
    internal void SetReserved() => _reserved.TrySetResult(true);

    /// <summary>
    /// Ends the import: <see cref="Reserved"/> false unless it was set, <see cref="Completed"/> with this outcome
    /// unless it was set, later arrivals no-ops (engine loop, or the submitting thread on a rejection).
    /// </summary>
    internal void End(KvImportStatus status, string detail)
    {
        Interlocked.Exchange(ref _arrival, Closed);
        Volatile.Write(ref _arrived, null);
        _reserved.TrySetResult(false);
        _completed.TrySetResult(new KvImportOutcome(status, detail));
    }
}
