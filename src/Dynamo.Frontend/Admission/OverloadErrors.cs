using System.Globalization;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Frontend.Admission;

/// <summary>
/// The errors of the overload contract that the frontend raises itself (README.md at the repository root,
/// "Overload"): 429 for a per-client or per-model limit, 503 when no capacity is left, both with Retry-After; 504
/// past a request's deadline. Each error's <c>code</c> is its machine-readable reason, also sent as the
/// <see cref="ReasonHeader"/> header of a 429 or 503.
/// </summary>
internal static class OverloadErrors
{
    /// <summary>The header that carries a refusal's reason (the error object's <c>code</c>).</summary>
    public const string ReasonHeader = "X-Dynamo-Reject-Reason";

    /// <summary>The admission queue is full and the request was not of a higher priority than any waiting one (or was displaced by one).</summary>
    public const string QueueFull = "queue_full";

    /// <summary>The request waited <see cref="AdmissionOptions.QueueTimeout"/> for a slot.</summary>
    public const string QueueTimeout = "queue_timeout";

    /// <summary>The client has <see cref="AdmissionOptions.MaxInflightPerClient"/> requests in the frontend already.</summary>
    public const string ClientLimit = "client_limit";

    /// <summary>The model has <see cref="AdmissionOptions.MaxInflightPerModel"/> requests in the frontend already.</summary>
    public const string ModelLimit = "model_limit";

    /// <summary>The request's deadline passed.</summary>
    public const string DeadlineExceeded = "deadline_exceeded";

    /// <summary>The Retry-After of the frontend's own refusals, in seconds.</summary>
    public const int RetryAfterSeconds = 1;

    public static OpenAiException QueueFullError(int waiting, bool displaced) => OpenAiException.Unavailable(displaced
        ? $"The request was displaced from the full admission queue ({waiting} waiting) by one of higher priority."
        : $"The frontend is at capacity and its admission queue is full ({waiting} waiting, --max-queued-requests); a request of higher priority (lower 'priority' value) would have displaced the lowest waiting one.",
        QueueFull, RetryAfterSeconds);

    public static OpenAiException QueueTimeoutError(TimeSpan waited) => OpenAiException.Unavailable(
        $"No slot became free within {Seconds(waited)} s (--queue-timeout).", QueueTimeout, RetryAfterSeconds);

    public static OpenAiException ClientLimitError(int limit) => new(429, "rate_limit_error",
        $"This client has {limit} requests in flight already, the limit per client (--max-inflight-per-client).", null, ClientLimit)
    { RetryAfterSeconds = RetryAfterSeconds };

    public static OpenAiException ModelLimitError(string model, int limit) => new(429, "rate_limit_error",
        $"Model '{model}' has {limit} requests in flight already, the limit per model (--max-inflight-per-model).", null, ModelLimit)
    { RetryAfterSeconds = RetryAfterSeconds };

    public static OpenAiException DeadlineExceededError(TimeSpan deadline) => new(504, "timeout_error",
        $"The request did not finish within its deadline of {Seconds(deadline)} s ('timeout', X-Request-Timeout or --request-timeout); it was stopped.", null, DeadlineExceeded);

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
}
