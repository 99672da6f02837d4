using System.Threading.Channels;

namespace Dynamo.Components.Processing;

/// <summary>
/// A request being generated: its <see cref="Info"/> and the postprocessed events of every choice, in the
/// order they arrive. Produced in this process (<see cref="GenerationPipeline"/>) or relayed from a
/// Processor component (<see cref="ProcessorRelay"/>). Disposing stops the generation down to the
/// workers (their KV is freed) and waits for it to wind down.
/// </summary>
internal sealed class Generation(GenerationInfo info, ChannelReader<ChoiceEvent> events, CancellationTokenSource stop, Task producers) : IAsyncDisposable
{
    /// <summary>What the response writer needs to know first.</summary>
    public GenerationInfo Info { get; } = info;

    /// <summary>The events; completed when every choice ended.</summary>
    public ChannelReader<ChoiceEvent> Events { get; } = events;

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync().ConfigureAwait(false);
        await producers.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        stop.Dispose();
    }
}
