using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Benchmarks;

/// <summary>
/// The SSE writer waiting for a choice's next event while keep-alives are due every 5 s
/// (<see cref="ChoiceEventReader"/>): the reader is parked on an empty channel, an event arrives, the reader
/// resumes. What the writer pays per streamed token when tokens arrive slower than it writes them (the
/// usual case). Per operation = per wait.
/// Run: dotnet run -c Release --project benchmarks/Dynamo.Benchmarks -- --filter '*TokenWait*'
/// </summary>
[MemoryDiagnoser]
public class TokenWaitBenchmarks
{
    private const int Waits = 1000;

    private readonly ChoiceEvent _event = new(0, new ChoiceDelta("token", null, 0, null), 1, 1, 0, null);
    private readonly CancellationTokenSource _request = new();
    private Channel<ChoiceEvent> _channel = null!;
    private ChoiceEventReader _reader = null!;

    [GlobalSetup]
    public void Setup()
    {
        _channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(64) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var sse = new SseWriter(DiscardResponseBody.Response(new DiscardResponseBody()));
        _reader = new ChoiceEventReader(_channel.Reader, sse, TimeSpan.FromSeconds(5));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _reader.Dispose();
        _request.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Waits)]
    public async Task<int> WaitForEvent()
    {
        int tokens = 0;
        for (int i = 0; i < Waits; i++)
        {
            ValueTask<ChoiceEvent?> next = _reader.NextAsync(_request.Token);
            _channel.Writer.TryWrite(_event);
            tokens += (await next.ConfigureAwait(false))!.Value.NewTokens;
        }

        return tokens;
    }
}
