using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// An OpenTelemetry collector's OTLP/HTTP traces receiver on loopback (POST /v1/traces, application/x-protobuf), as a
/// process under test exports to it with OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf:
/// every span it receives, decoded from the ExportTraceServiceRequest with a small reader of the protobuf wire
/// format (opentelemetry/proto/collector/trace/v1, trace/v1, resource/v1, common/v1).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;
    private int _requests;

    private OtlpReceiver(int port)
    {
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    /// <summary>The base URL to give OTEL_EXPORTER_OTLP_ENDPOINT (the exporter posts to {base}/v1/traces).</summary>
    public string Endpoint { get; }

    /// <summary>Every span received so far.</summary>
    public ConcurrentQueue<OtlpSpan> Spans { get; } = new();

    /// <summary>Export requests received so far (any path).</summary>
    public int Requests => Volatile.Read(ref _requests);

    public static OtlpReceiver Start()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return new OtlpReceiver(port);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _loop;
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            Interlocked.Increment(ref _requests);
            try
            {
                using var body = new MemoryStream();
                Stream input = context.Request.Headers["Content-Encoding"] == "gzip" ? new GZipStream(context.Request.InputStream, CompressionMode.Decompress) : context.Request.InputStream;
                await input.CopyToAsync(body);
                bool traces = context.Request.HttpMethod == "POST" && context.Request.Url?.AbsolutePath == "/v1/traces"
                    && context.Request.ContentType?.StartsWith("application/x-protobuf", StringComparison.Ordinal) == true;
                if (traces)
                {
                    foreach (OtlpSpan span in Decode(body.ToArray()))
                    {
                        Spans.Enqueue(span);
                    }
                }

                context.Response.StatusCode = traces ? 200 : 404;
                context.Response.ContentType = "application/x-protobuf";
            }
            catch (InvalidProtocolBufferException)
            {
                context.Response.StatusCode = 400;
            }
            finally
            {
                context.Response.Close();
            }
        }
    }

    /// <summary>The spans of an ExportTraceServiceRequest.</summary>
    public static List<OtlpSpan> Decode(byte[] request)
    {
        var spans = new List<OtlpSpan>();
        foreach (ByteString resourceSpans in Fields(request, 1))
        {
            string service = "";
            foreach (ByteString resource in Fields(resourceSpans, 1))
            {
                service = Attributes(Fields(resource, 1)).GetValueOrDefault("service.name", "");
            }

            foreach (ByteString scopeSpans in Fields(resourceSpans, 2))
            {
                string scope = Fields(scopeSpans, 1).Select(s => Fields(s, 1).FirstOrDefault()?.ToStringUtf8()).FirstOrDefault() ?? "";
                foreach (ByteString span in Fields(scopeSpans, 2))
                {
                    spans.Add(DecodeSpan(service, scope, span));
                }
            }
        }

        return spans;
    }

    private static OtlpSpan DecodeSpan(string service, string scope, ByteString span)
    {
        string traceId = "", spanId = "", parentSpanId = "", name = "";
        int kind = 0;
        ulong start = 0, end = 0;
        var attributes = new List<ByteString>();
        var input = new CodedInputStream(span.ToByteArray());
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: traceId = Convert.ToHexStringLower(input.ReadBytes().Span); break;
                case 2: spanId = Convert.ToHexStringLower(input.ReadBytes().Span); break;
                case 4: parentSpanId = Convert.ToHexStringLower(input.ReadBytes().Span); break;
                case 5: name = input.ReadString(); break;
                case 6: kind = input.ReadEnum(); break;
                case 7: start = input.ReadFixed64(); break;
                case 8: end = input.ReadFixed64(); break;
                case 9: attributes.Add(input.ReadBytes()); break;
                default: input.SkipLastField(); break;
            }
        }

        return new OtlpSpan(service, scope, traceId, spanId, parentSpanId, name, kind, start, end, Attributes(attributes));
    }

    /// <summary>KeyValue messages as key -> value text (strings, integers, booleans and doubles; others empty).</summary>
    private static Dictionary<string, string> Attributes(IEnumerable<ByteString> keyValues)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (ByteString kv in keyValues)
        {
            string key = Fields(kv, 1).FirstOrDefault()?.ToStringUtf8() ?? "";
            string value = "";
            foreach (ByteString any in Fields(kv, 2))
            {
                var input = new CodedInputStream(any.ToByteArray());
                uint tag;
                while ((tag = input.ReadTag()) != 0)
                {
                    value = WireFormat.GetTagFieldNumber(tag) switch
                    {
                        1 => input.ReadString(),
                        2 => input.ReadBool() ? "true" : "false",
                        3 => input.ReadInt64().ToString(System.Globalization.CultureInfo.InvariantCulture),
                        4 => input.ReadDouble().ToString(System.Globalization.CultureInfo.InvariantCulture),
                        _ => Skip(input),
                    };
                }
            }

            result[key] = value;
        }

        return result;
    }

    private static string Skip(CodedInputStream input)
    {
        input.SkipLastField();
        return "";
    }

    /// <summary>The length-delimited fields numbered <paramref name="number"/> of a message (others skipped).</summary>
    private static List<ByteString> Fields(ByteString message, int number) => Fields(message.ToByteArray(), number);

    private static List<ByteString> Fields(byte[] message, int number)
    {
        var fields = new List<ByteString>();
        var input = new CodedInputStream(message);
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == number && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
            {
                fields.Add(input.ReadBytes());
            }
            else
            {
                input.SkipLastField();
            }
        }

        return fields;
    }
}
