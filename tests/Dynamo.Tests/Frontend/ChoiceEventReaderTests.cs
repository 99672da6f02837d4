using System.Text;
using System.Threading.Channels;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;
using Dynamo.Llm.Preprocessing;
using Dynamo.Tests.Mocker;
using Dynamo.Tests.Runtime;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Tests.Frontend;

/// <summary>The SSE writer's wait for the next event: keep-alives from one re-armed timer, cancellation, the end, and no allocation per wait.</summary>
public sealed class ChoiceEventReaderTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);
    private static readonly ChoiceEvent Token = new(0, new ChoiceDelta("x", null, 0, null), 1, 1, 0, null);

    private static Channel<ChoiceEvent> NewChannel(bool synchronous = false) =>
        Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(8) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait, AllowSynchronousContinuations = synchronous });

    private static (SseWriter Sse, RecordingStream Body) NewSse()
    {
        var body = new RecordingStream();
        var context = new DefaultHttpContext();
        context.Response.Body = body;
        return (new SseWriter(context.Response), body);
    }

    [Fact]
    public async Task NextAsync_NoEventForIntervals_OneKeepAlivePerIntervalThenTheEvent()
    {
        var time = new ManualTimeProvider();
        Channel<ChoiceEvent> channel = NewChannel();
        (SseWriter sse, RecordingStream body) = NewSse();
        using var reader = new ChoiceEventReader(channel.Reader, sse, Interval, time);

        ValueTask<ChoiceEvent?> next = reader.NextAsync(CancellationToken.None);
        Assert.Equal(Interval, await time.NextDueAsync());
        time.Advance(Interval);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => body.Text.Length > 0);
        Assert.Equal(Interval, await time.NextDueAsync());
        time.Advance(Interval);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => body.Text.Length > ": keep-alive\n\n".Length);
        channel.Writer.TryWrite(Token);

        Assert.Equal(Token, await next);
        Assert.Equal(": keep-alive\n\n: keep-alive\n\n", body.Text);
    }

    [Fact]
    public async Task NextAsync_EventBeforeTheInterval_NoKeepAliveAndTheNextWaitCountsFromItsOwnStart()
    {
        var time = new ManualTimeProvider();
        Channel<ChoiceEvent> channel = NewChannel();
        (SseWriter sse, RecordingStream body) = NewSse();
        using var reader = new ChoiceEventReader(channel.Reader, sse, Interval, time);

        ValueTask<ChoiceEvent?> first = reader.NextAsync(CancellationToken.None);
        await time.NextDueAsync();
        time.Advance(Interval * 0.6);
        channel.Writer.TryWrite(Token);
        Assert.Equal(Token, await first);
        ValueTask<ChoiceEvent?> second = reader.NextAsync(CancellationToken.None);
        Assert.Equal(Interval, await time.NextDueAsync());
        time.Advance(Interval * 0.6);

        Assert.Equal("", body.Text);
        time.Advance(Interval * 0.4);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => body.Text.Length > 0);
        channel.Writer.TryWrite(Token);
        Assert.Equal(Token, await second);
        Assert.Equal(": keep-alive\n\n", body.Text);
    }

    [Fact]
    public async Task NextAsync_CancelledWhileWaiting_Throws()
    {
        Channel<ChoiceEvent> channel = NewChannel();
        (SseWriter sse, _) = NewSse();
        using var reader = new ChoiceEventReader(channel.Reader, sse, TimeSpan.FromMinutes(1));
        using var request = new CancellationTokenSource();

        ValueTask<ChoiceEvent?> next = reader.NextAsync(request.Token);
        await request.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await next);
    }

    [Fact]
    public async Task NextAsync_ChannelCompleted_EventsThenNull()
    {
        Channel<ChoiceEvent> channel = NewChannel();
        using var reader = new ChoiceEventReader(channel.Reader, null, Interval);

        ValueTask<ChoiceEvent?> next = reader.NextAsync(CancellationToken.None);
        channel.Writer.TryWrite(Token);
        channel.Writer.TryComplete();

        Assert.Equal(Token, await next);
        Assert.Null(await reader.NextAsync(CancellationToken.None));
    }

    [Fact]
    public void NextAsync_WaitsForEvents_AllocatesNothingPerWait()
    {
        // Continuations run inline here, so every wait, wake-up and read happens on this thread and is counted.
        Channel<ChoiceEvent> channel = NewChannel(synchronous: true);
        (SseWriter sse, _) = NewSse();
        using var reader = new ChoiceEventReader(channel.Reader, sse, TimeSpan.FromMinutes(1));
        using var request = new CancellationTokenSource();
        int tokens = 0;
        void Wait()
        {
            ValueTask<ChoiceEvent?> next = reader.NextAsync(request.Token);
            Assert.False(next.IsCompleted);
            channel.Writer.TryWrite(Token);
            Assert.True(next.IsCompletedSuccessfully);
            tokens += next.Result!.Value.NewTokens;
        }

        for (int i = 0; i < 10; i++)
        {
            Wait();
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Wait();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1010, tokens);
    }

    /// <summary>A response body whose text the test can read while the writer writes.</summary>
    private sealed class RecordingStream : Stream
    {
        private readonly Lock _gate = new();
        private readonly MemoryStream _bytes = new();

        public string Text
        {
            get
            {
                lock (_gate)
                {
                    return Encoding.UTF8.GetString(_bytes.ToArray());
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (_gate)
            {
                _bytes.Write(buffer, offset, count);
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
