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

    [Fact]
    public async Task NextAsync_NoEventForIntervals_OneKeepAlivePerIntervalThenTheEvent()
    {
        using var rig = new Rig();

        ValueTask<ChoiceEvent?> next = rig.Reader.NextAsync(CancellationToken.None);
        Assert.Equal(Interval, await rig.Time.NextDueAsync());
        rig.Time.Advance(Interval);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => rig.Body.Text.Length > 0);
        Assert.Equal(Interval, await rig.Time.NextDueAsync());
        rig.Time.Advance(Interval);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => rig.Body.Text.Length > ": keep-alive\n\n".Length);
        rig.Channel.Writer.TryWrite(Token);

        Assert.Equal(Token, await next);
        Assert.Equal(": keep-alive\n\n: keep-alive\n\n", rig.Body.Text);
    }

    [Fact]
    public async Task NextAsync_EventBeforeTheInterval_NoKeepAliveAndTheNextWaitCountsFromItsOwnStart()
    {
        using var rig = new Rig();

        ValueTask<ChoiceEvent?> first = rig.Reader.NextAsync(CancellationToken.None);
        await rig.Time.NextDueAsync();
        rig.Time.Advance(Interval * 0.6);
        rig.Channel.Writer.TryWrite(Token);
        Assert.Equal(Token, await first);
        ValueTask<ChoiceEvent?> second = rig.Reader.NextAsync(CancellationToken.None);
        Assert.Equal(Interval, await rig.Time.NextDueAsync());
        rig.Time.Advance(Interval * 0.6);

        Assert.Equal("", rig.Body.Text);
        rig.Time.Advance(Interval * 0.4);
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => rig.Body.Text.Length > 0);
        rig.Channel.Writer.TryWrite(Token);
        Assert.Equal(Token, await second);
        Assert.Equal(": keep-alive\n\n", rig.Body.Text);
    }

    [Fact]
    public async Task NextAsync_CancelledWhileWaiting_Throws()
    {
        using var rig = new Rig();
        using var request = new CancellationTokenSource();

        ValueTask<ChoiceEvent?> next = rig.Reader.NextAsync(request.Token);
        await request.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await next);
    }

    [Fact]
    public async Task NextAsync_ChannelCompleted_EventsThenNull()
    {
        using var rig = new Rig();

        ValueTask<ChoiceEvent?> next = rig.Reader.NextAsync(CancellationToken.None);
        rig.Channel.Writer.TryWrite(Token);
        rig.Channel.Writer.TryComplete();

        Assert.Equal(Token, await next);
        Assert.Null(await rig.Reader.NextAsync(CancellationToken.None));
    }

    [Fact]
    public void NextAsync_WaitsForEvents_AllocatesNothingPerWait()
    {
        // Continuations run inline here, so every wait, wake-up and read happens on this thread and is counted.
        using var rig = new Rig(synchronous: true);
        using var request = new CancellationTokenSource();
        int tokens = 0;
        void Wait()
        {
            ValueTask<ChoiceEvent?> next = rig.Reader.NextAsync(request.Token);
            Assert.False(next.IsCompleted);
            rig.Channel.Writer.TryWrite(Token);
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

    /// <summary>A reader on its own channel, writing keep-alives every <see cref="Interval"/> of a manual clock to a recording body.</summary>
    private sealed class Rig : IDisposable
    {
        public Rig(bool synchronous = false)
        {
            Channel = System.Threading.Channels.Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(8)
            {
                SingleReader = true,
                FullMode = BoundedChannelFullMode.Wait,
                AllowSynchronousContinuations = synchronous,
            });
            var context = new DefaultHttpContext();
            context.Response.Body = Body;
            Reader = new ChoiceEventReader(Channel.Reader, new SseWriter(context.Response), Interval, Time);
        }

        public ManualTimeProvider Time { get; } = new();

        public Channel<ChoiceEvent> Channel { get; }

        public RecordingStream Body { get; } = new();

        public ChoiceEventReader Reader { get; }

        public void Dispose() => Reader.Dispose();
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
