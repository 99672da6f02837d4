using System.Text.Json;
using Dynamo.Runtime.EventPlane;

namespace Dynamo.Components.Routing;

/// <summary>The router's event loops: parse each message of a subscription and apply it; a malformed one is reported and skipped.</summary>
internal static class EventReader
{
    /// <summary>Parses one message's payload (<see cref="FormatException"/> or <see cref="JsonException"/> when malformed).</summary>
    public delegate T Parser<out T>(ReadOnlySpan<byte> payload);

    /// <summary>Reads <paramref name="subscription"/> until it ends or <paramref name="cancellationToken"/> is cancelled.</summary>
    public static async Task ReadAsync<T>(IEventSubscription subscription, Parser<T> parse, Action<T> apply, Action<string, Exception> malformed, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (EventMessage message in subscription.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                T parsed;
                try
                {
                    parsed = parse(message.Payload.Span);
                }
                catch (Exception e) when (e is FormatException or JsonException)
                {
                    malformed(message.Subject, e);
                    continue;
                }

                apply(parsed);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}
