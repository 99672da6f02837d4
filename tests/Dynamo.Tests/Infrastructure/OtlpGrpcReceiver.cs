using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// An OpenTelemetry collector's OTLP/gRPC traces receiver on loopback, as a process under test exports to it with
/// OTEL_EXPORTER_OTLP_ENDPOINT and the default protocol (grpc): Kestrel over HTTP/2 without TLS, serving the one unary
/// method of opentelemetry.proto.collector.trace.v1.TraceService, Export, by hand (a gRPC message is a 5-byte
/// prefix, compressed flag and big-endian length, then the protobuf; the status goes in the grpc-status trailer).
/// The spans are decoded by <see cref="OtlpReceiver.Decode"/>.
/// </summary>
public sealed class OtlpGrpcReceiver : IAsyncDisposable
{
    /// <summary>The path of TraceService/Export, as gRPC names a method.</summary>
    public const string ExportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    private readonly WebApplication _app;
    private int _requests;

    private OtlpGrpcReceiver(WebApplication app, string endpoint)
    {
        _app = app;
        Endpoint = endpoint;
    }

    /// <summary>The URL to give OTEL_EXPORTER_OTLP_ENDPOINT or --otlp-endpoint.</summary>
    public string Endpoint { get; }

    /// <summary>Every span received so far.</summary>
    public ConcurrentQueue<OtlpSpan> Spans { get; } = new();

    /// <summary>Export calls answered so far.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>How each call came ("HTTP/2 application/grpc" for a gRPC exporter's).</summary>
    public ConcurrentQueue<string> Calls { get; } = new();

    public static async Task<OtlpGrpcReceiver> StartAsync()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();

        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l => l.Protocols = HttpProtocols.Http2));
        WebApplication app = builder.Build();
        var receiver = new OtlpGrpcReceiver(app, $"http://127.0.0.1:{port}");
        app.MapPost(ExportPath, receiver.ExportAsync);
        await app.StartAsync();
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task ExportAsync(HttpContext context)
    {
        Interlocked.Increment(ref _requests);
        Calls.Enqueue($"{context.Request.Protocol} {context.Request.ContentType}");
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        byte[] frames = body.ToArray();
        string status = "0";
        string? message = null;
        for (int at = 0; at < frames.Length;)
        {
            if (frames.Length - at < 5)
            {
                (status, message) = ("13", "a truncated gRPC message");
                break;
            }

            bool compressed = frames[at] == 1;
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(frames.AsSpan(at + 1, 4));
            byte[] payload = frames.AsSpan(at + 5, length).ToArray();
            at += 5 + length;
            if (compressed)
            {
                using var unzipped = new MemoryStream();
                using (var gzip = new GZipStream(new MemoryStream(payload), CompressionMode.Decompress))
                {
                    await gzip.CopyToAsync(unzipped);
                }

                payload = unzipped.ToArray();
            }

            foreach (OtlpSpan span in OtlpReceiver.Decode(payload))
            {
                Spans.Enqueue(span);
            }
        }

        context.Response.ContentType = "application/grpc";
        if (status == "0")
        {
            // An empty ExportTraceServiceResponse: no partial success to report.
            await context.Response.Body.WriteAsync(new byte[5]);
        }

        context.Response.AppendTrailer("grpc-status", status);
        if (message is not null)
        {
            context.Response.AppendTrailer("grpc-message", message);
        }
    }
}
