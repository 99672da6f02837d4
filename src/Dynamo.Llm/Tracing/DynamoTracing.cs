using System.Diagnostics;

namespace Dynamo.Llm.Tracing;

/// <summary>
/// The one place that names the system's per-request spans (README "Tracing requests"): one
/// <see cref="ActivitySource"/> per process area, the span names and their attributes. Emitting needs only the
/// BCL, so every project that sees Dynamo.Llm (the engines too) can emit; only the CLI attaches the
/// OpenTelemetry SDK and its OTLP exporter, and only when an endpoint is configured. Without a listener
/// <see cref="ActivitySource.StartActivity(string, ActivityKind)"/> returns null and nothing is recorded.
/// The request plane (Dynamo.Runtime, which cannot see this project) emits nothing: it carries the W3C trace
/// context (<c>traceparent</c>, <c>tracestate</c>) to the serving side, where the components start their spans under it.
/// </summary>
public static class DynamoTracing
{
    /// <summary>What every source's name starts with: a tracer subscribes to <c>Dynamo.*</c>.</summary>
    public const string SourcePrefix = "Dynamo.";

    /// <summary>The HTTP frontend: the request, its admission wait.</summary>
    public static readonly ActivitySource Frontend = new("Dynamo.Frontend");

    /// <summary>Preprocessing, routing and the call to the worker (in the frontend, or in a Processor component).</summary>
    public static readonly ActivitySource Processor = new("Dynamo.Processor");

    /// <summary>The KV router as its own component (<c>dynamo router</c>).</summary>
    public static readonly ActivitySource Router = new("Dynamo.Router");

    /// <summary>A worker serving a request: its generate endpoint, the remote prefill leg, the KV push.</summary>
    public static readonly ActivitySource Worker = new("Dynamo.Worker");

    /// <summary>The engine's phases of a request: queue, prefill, decode (recorded when the request ends).</summary>
    public static readonly ActivitySource Engine = new("Dynamo.Engine");

    /// <summary>Every source above, by name.</summary>
    public static IReadOnlyList<string> SourceNames { get; } = [Frontend.Name, Processor.Name, Router.Name, Worker.Name, Engine.Name];

    /// <summary>Span names.</summary>
    public static class Spans
    {
        /// <summary>The frontend's handling of one HTTP request, from its body to the end of its response.</summary>
        public const string Frontend = "frontend";

        /// <summary>Waiting in the frontend's admission queue (--max-inflight-requests).</summary>
        public const string Admission = "admission";

        /// <summary>Chat template and tokenizer.</summary>
        public const string Preprocess = "preprocess";

        /// <summary>The router's decision for one attempt (with the KV router, its queue too).</summary>
        public const string Route = "route";

        /// <summary>One attempt's call to the chosen worker over the request plane (client side).</summary>
        public const string WorkerCall = "worker_call";

        /// <summary>A worker serving a generate request (server side).</summary>
        public const string Worker = "worker";

        /// <summary>A router component serving a route request (server side).</summary>
        public const string RouterServe = "router";

        /// <summary>A Processor component serving a relayed request (server side).</summary>
        public const string ProcessorServe = "processor";

        /// <summary>Waiting in the engine's scheduler queue, from submission (or the arrival of transferred KV) to the first step.</summary>
        public const string Queue = "queue";

        /// <summary>From the first scheduled step to the first token (the prompt's forward passes).</summary>
        public const string Prefill = "prefill";

        /// <summary>From the first token to the last.</summary>
        public const string Decode = "decode";

        /// <summary>A decode worker's remote prefill leg: the prefill worker's call and the KV's arrival.</summary>
        public const string RemotePrefill = "remote_prefill";

        /// <summary>A prefill worker's push of the KV to the decode worker.</summary>
        public const string KvTransfer = "kv_transfer";
    }

    /// <summary>Attribute names (OpenTelemetry's where one exists).</summary>
    public static class Attributes
    {
        public const string RequestId = "dynamo.request_id";
        public const string Model = "gen_ai.request.model";
        public const string Endpoint = "dynamo.endpoint";
        public const string Stream = "dynamo.stream";
        public const string Status = "http.response.status_code";
        public const string PromptTokens = "gen_ai.usage.input_tokens";
        public const string CompletionTokens = "gen_ai.usage.output_tokens";
        public const string CachedTokens = "dynamo.cached_tokens";
        public const string ImportedTokens = "dynamo.imported_tokens";
        public const string Choices = "dynamo.choices";
        public const string WorkerId = "dynamo.worker_id";
        public const string DpRank = "dynamo.dp_rank";
        public const string RouterMode = "dynamo.router_mode";
        public const string PredictedCachedTokens = "dynamo.predicted_cached_tokens";
        public const string Attempt = "dynamo.attempt";
        public const string PrefillWorkerId = "dynamo.prefill_worker_id";
        public const string DecodeWorkerId = "dynamo.decode_worker_id";
        public const string TransferBytes = "dynamo.kv_transfer.bytes";
        public const string TransferTokens = "dynamo.kv_transfer.tokens";
        public const string FinishReason = "gen_ai.response.finish_reasons";
        public const string Preemptions = "dynamo.preemptions";
    }

    /// <summary>
    /// The trace id a log line names (<c>trace_id=</c>, so that one request's lines in every process are found by it):
    /// <paramref name="context"/>'s in lower-case hex, "-" when it has none.
    /// </summary>
    public static string LogTraceId(ActivityContext context) => context.TraceId == default ? "-" : context.TraceId.ToHexString();

    /// <summary>
    /// Records a span that already happened (a phase inside an engine loop, not a code region), under
    /// <paramref name="parent"/>, from <paramref name="start"/> to <paramref name="end"/>; null when nobody
    /// records it. The caller adds attributes and disposes it. Leaves <see cref="Activity.Current"/> as it was.
    /// </summary>
    public static Activity? StartPast(ActivitySource source, string name, ActivityContext parent, DateTime start, DateTime end)
    {
        Activity? current = Activity.Current;
        Activity? span = source.StartActivity(name, ActivityKind.Internal, parent, startTime: start);
        Activity.Current = current;
        span?.SetEndTime(end < start ? start : end);
        return span;
    }

    /// <summary>Ends <paramref name="span"/> (if any) without changing <see cref="Activity.Current"/>.</summary>
    public static void EndPast(Activity? span)
    {
        if (span is null)
        {
            return;
        }

        Activity? current = Activity.Current;
        span.Stop();
        Activity.Current = current;
    }
}
