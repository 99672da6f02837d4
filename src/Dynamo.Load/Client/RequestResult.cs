namespace Dynamo.Load.Client;

/// <summary>
/// The measurements of one request. Times are seconds; <see cref="Start"/> is from the run's start.
/// <see cref="TokenGaps"/> are the times between successive content chunks (the inter-token latencies).
/// </summary>
internal sealed record RequestResult
{
    public RequestOutcome Outcome { get; init; }

    public double Start { get; init; }

    /// <summary>Time to the first content chunk; null when none came.</summary>
    public double? Ttft { get; init; }

    /// <summary>Time from sending to the end of the stream (or the failure).</summary>
    public double EndToEnd { get; init; }

    /// <summary>Output tokens: usage.completion_tokens when the server sent usage, else content chunks.</summary>
    public int OutputTokens { get; init; }

    /// <summary>usage.prompt_tokens; null without a usage chunk.</summary>
    public int? PromptTokens { get; init; }

    public IReadOnlyList<double> TokenGaps { get; init; } = [];

    /// <summary>The answer's text (the content deltas joined).</summary>
    public string Text { get; init; } = "";

    /// <summary>What went wrong (status and body, or the exception); null when Ok.</summary>
    public string? Error { get; init; }

    /// <summary>HTTP status when the server answered with a non-success one.</summary>
    public int? StatusCode { get; init; }

    /// <summary>
    /// 1 when the request was sent a second time, on a new connection, because its first connection closed
    /// before one byte of the response came back (the server cannot have started streaming it); else 0.
    /// </summary>
    public int Retries { get; init; }

    /// <summary>Why the first send failed, when <see cref="Retries"/> is 1.</summary>
    public string? RetryError { get; init; }
}
