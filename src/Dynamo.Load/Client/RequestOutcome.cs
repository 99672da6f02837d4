namespace Dynamo.Load.Client;

/// <summary>How a request ended.</summary>
internal enum RequestOutcome
{
    /// <summary>A complete stream ending in <c>data: [DONE]</c>.</summary>
    Ok = 0,

    /// <summary>HTTP 429 or 503: the server refused it for load.</summary>
    Rejected = 1,

    /// <summary>Anything else: another HTTP status, a connection failure, an error event, a cut stream.</summary>
    Error = 2,
}
