using System.Diagnostics;
using Dynamo.Llm.Tracing;

namespace Dynamo.Frontend.Http;

/// <summary>One request's facts for its log line and metrics (written by the request's own task only).</summary>
internal sealed class RequestTrace(string id, string endpoint)
{
    public string Id { get; } = id;

    /// <summary>"chat_completions" or "completions".</summary>
    public string Endpoint { get; } = endpoint;

    public long Start { get; } = Stopwatch.GetTimestamp();

    /// <summary>The served model ("" until the request names one that is served).</summary>
    public string Model { get; set; } = "";

    public bool Stream { get; set; }

    public int Status { get; set; } = 200;

    public int PromptTokens { get; set; }

    public int CompletionTokens { get; set; }

    public TimeSpan? TimeToFirstToken { get; set; }

    public bool Queued { get; set; }

    /// <summary>The request's span in the frontend (null when nobody records it).</summary>
    public Activity? Span { get; init; }

    /// <summary>The W3C trace id of the request (its span's, else the HTTP request's own activity's, which continues a client's traceparent); "-" when it has none.</summary>
    public string TraceId => DynamoTracing.LogTraceId((Span ?? Activity.Current)?.Context ?? default);

    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(Start);
}
