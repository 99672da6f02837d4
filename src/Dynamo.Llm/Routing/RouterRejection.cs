namespace Dynamo.Llm.Routing;

/// <summary>Why a router refused a request (<see cref="RouterRejectedException.Reason"/>).</summary>
public enum RouterRejection
{
    /// <summary>None of the request's candidates is a worker the router can use (none known, all gone).</summary>
    NoWorker = 1,

    /// <summary>Every candidate is saturated and the admission queue is full: try again after Retry-After.</summary>
    QueueFull = 2,

    /// <summary>The request's routing settings are invalid (a per-request override out of range).</summary>
    InvalidRequest = 3,

    /// <summary>The request waited in the admission queue for <see cref="KvRouterOptions.QueueTimeout"/>: try again after Retry-After.</summary>
    QueueTimeout = 4,
}
