using System.Diagnostics;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The W3C trace context (https://www.w3.org/TR/trace-context/) a request carries from its client's span to its
/// handler: <c>traceparent</c> and <c>tracestate</c>, read from and written to the caller's <see cref="Activity"/>.
/// The request plane records no spans itself (the components do, README "Tracing requests"); it only carries
/// the context, whether or not anything is recorded, as HTTP clients do.
/// </summary>
internal static class TraceContext
{
    /// <summary>The header of the parent span: <c>00-{trace id}-{span id}-{flags}</c>.</summary>
    public const string TraceParent = "traceparent";

    /// <summary>The header of vendor-specific trace state, passed through as it came.</summary>
    public const string TraceState = "tracestate";

    /// <summary>The context to send for the caller's current span: (null, null) when it has none or it is not in W3C format.</summary>
    public static (string? Parent, string? State) Outgoing()
    {
        Activity? current = Activity.Current;
        return current is { IdFormat: ActivityIdFormat.W3C } ? (current.Id, current.TraceStateString) : (null, null);
    }

    /// <summary>The client's span from the headers' values; default when absent or malformed (a bad header never fails a request).</summary>
    public static ActivityContext Incoming(string? parent, string? state) =>
        parent is not null && ActivityContext.TryParse(parent, state, isRemote: true, out ActivityContext context) ? context : default;
}
