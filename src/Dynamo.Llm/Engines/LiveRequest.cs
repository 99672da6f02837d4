using System.Threading.Channels;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Llm.Engines;

/// <summary>
/// A request between its submission and its last output, as <see cref="EngineCore{TState}"/> keeps it: the
/// request, its scheduler sequence (whose <see cref="SequenceState.Tag"/> points back here), the engine's own
/// per-request state and the channel its outputs go to.
/// </summary>
/// <typeparam name="TState">What the engine keeps per request (the built-in engine its sampler, the mocker its token key).</typeparam>
internal sealed class LiveRequest<TState>(EngineRequest request, SequenceState sequence, TState state)
{
    public EngineRequest Request { get; } = request;

    public SequenceState Sequence { get; } = sequence;

    public TState State { get; } = state;

    /// <summary>Prompt tokens whose KV came from another engine, with the request or deferred (0 when none, or when it was refused).</summary>
    public int ImportedTokens { get; set; }

    /// <summary>When it passed each phase, for its spans; null when it is not traced.</summary>
    public EngineTrace? Trace { get; } = EngineTrace.For(request);

    /// <summary>Unbounded: a request's output is bounded by its max_tokens. One writer (the engine loop), one reader.</summary>
    public Channel<EngineOutput> Outputs { get; } = Channel.CreateUnbounded<EngineOutput>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>The live request a scheduled sequence belongs to.</summary>
    public static LiveRequest<TState> Of(SequenceState sequence) => (LiveRequest<TState>)sequence.Tag!;
}
