namespace Dynamo.Tests.Infrastructure;

/// <summary>One span as an OTLP exporter sent it: its process's service.name, its instrumentation scope (the ActivitySource), ids in lower-case hex (parent "" for a root), kind (1 internal, 2 server, 3 client), times in unix ns.</summary>
public sealed record OtlpSpan(string Service, string Scope, string TraceId, string SpanId, string ParentSpanId, string Name, int Kind, ulong StartUnixNano, ulong EndUnixNano, IReadOnlyDictionary<string, string> Attributes);
