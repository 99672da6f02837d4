using System.Threading.Channels;
using Dynamo.Components.Processing;

namespace Dynamo.Frontend.Http;

/// <summary>Reads a generation's events for one response, writing SSE keep-alive comments while none arrives (when given an <see cref="SseWriter"/>).</summary>
internal sealed class ChoiceEventReader(ChannelReader<ChoiceEvent> reader, SseWriter? sse, TimeSpan keepAliveInterval) : IDisposable
{
    /// <summary>The next event; null at the end.</summary>
    public async ValueTask<ChoiceEvent?> NextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (reader.TryRead(out ChoiceEvent e))
            {
                return e;
            }

            Task<bool> ready = reader.WaitToReadAsync(cancellationToken).AsTask();
            if (sse is not null)
            {
                while (!ready.IsCompleted)
                {
                    using var delay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    Task timer = Task.Delay(keepAliveInterval, delay.Token);
                    if (await Task.WhenAny(ready, timer).ConfigureAwait(false) == timer)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        sse.WriteKeepAlive();
                        await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        await delay.CancelAsync().ConfigureAwait(false);
                    }
                }
            }

            if (!await ready.ConfigureAwait(false))
            {
                return null;
            }
        }
    }

    public void Dispose()
    {
    }
}
