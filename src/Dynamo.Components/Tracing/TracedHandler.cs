using System.Diagnostics;
using System.Runtime.CompilerServices;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Tracing;

/// <summary>
/// A served endpoint's side of a trace: each request's handler runs inside a server span started under the
/// client's span (<see cref="RequestContext.TraceParent"/>, carried by the request plane), so that one request is
/// one trace across processes. The span is <see cref="Activity.Current"/> until the handler's first response: the
/// spans the handler starts by then (preprocess, route, the engine's phases, a remote prefill) are its children.
/// Without a listener on the source nothing is started and the handler runs as it is.
/// </summary>
internal static class TracedHandler
{
    /// <summary><paramref name="handler"/>, each of its requests inside a <paramref name="spanName"/> span of <paramref name="source"/>.</summary>
    public static RequestHandler Wrap(ActivitySource source, string spanName, RequestHandler handler) =>
        (context, payload, cancellationToken) => source.HasListeners()
            ? ServeAsync(source, spanName, handler, context, payload, cancellationToken)
            : handler(context, payload, cancellationToken);

    /// <summary>The current span when <paramref name="source"/> started it (a handler adds its own attributes to the span <see cref="Wrap"/> started); else null.</summary>
    public static Activity? CurrentOf(ActivitySource source) => Activity.Current is { } current && current.Source == source ? current : null;

    /// <summary>Marks <paramref name="span"/> failed with <paramref name="error"/> unless the caller cancelled; false, so that it can sit in an exception filter.</summary>
    public static bool Failed(Activity? span, Exception error, CancellationToken cancellationToken)
    {
        if (span is not null && !(error is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            span.SetStatus(ActivityStatusCode.Error, error.Message);
        }

        return false;
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> ServeAsync(
        ActivitySource source, string spanName, RequestHandler handler, RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using Activity? span = source.StartActivity(spanName, ActivityKind.Server, context.TraceParent);
        span?.SetTag(Llm.Tracing.DynamoTracing.Attributes.RequestId, context.RequestId);
        IAsyncEnumerator<ReadOnlyMemory<byte>> responses = handler(context, payload, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (true)
            {
                try
                {
                    if (!await responses.MoveNextAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }
                catch (Exception e) when (Failed(span, e, cancellationToken))
                {
                    throw;
                }

                yield return responses.Current;
            }
        }
        finally
        {
            await responses.DisposeAsync().ConfigureAwait(false);
        }
    }
}
