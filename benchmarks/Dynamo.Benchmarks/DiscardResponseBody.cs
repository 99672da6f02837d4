using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Dynamo.Benchmarks;

/// <summary>
/// A response body that counts and drops what is written, so that a benchmark measures the SSE writer and
/// not a transport: one reused buffer, flushes complete at once.
/// </summary>
internal sealed class DiscardResponseBody : PipeWriter, IHttpResponseBodyFeature
{
    private readonly byte[] _buffer = new byte[64 * 1024];

    /// <summary>Bytes written since the start.</summary>
    public long Written { get; private set; }

    /// <summary>An HTTP response whose body is <paramref name="body"/>.</summary>
    public static HttpResponse Response(DiscardResponseBody body)
    {
        var context = new DefaultHttpContext();
        context.Features.Set<IHttpResponseBodyFeature>(body);
        return context.Response;
    }

    public Stream Stream => throw new NotSupportedException();

    public PipeWriter Writer => this;

    public override void Advance(int bytes) => Written += bytes;

    public override Memory<byte> GetMemory(int sizeHint = 0) => _buffer;

    public override Span<byte> GetSpan(int sizeHint = 0) => _buffer;

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(default(FlushResult));

    public override void CancelPendingFlush()
    {
    }

    public override void Complete(Exception? exception = null)
    {
    }

    public void DisableBuffering()
    {
    }

    public Task StartAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task CompleteAsync() => Task.CompletedTask;
}
