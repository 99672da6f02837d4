using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;
using Dynamo.Frontend.Observability;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Benchmarks;

/// <summary>
/// The frontend's per-token path when it preprocesses itself: a worker's generate-response frame (JSON bytes)
/// read and postprocessed by the pipeline (<see cref="ChoiceFrames"/>, <see cref="ChoicePostprocessor"/>),
/// through the choice channel to the response writer (<see cref="ChoiceEventReader"/>,
/// <see cref="StreamingResponse"/>, <see cref="SseWriter"/>, the per-token metrics) and out as SSE bytes, one
/// flush per event. The transport (request plane, Kestrel) is not included: the frames are in memory and the
/// body drops what it gets. <c>SteadyToken</c>: tokens in the middle of a long response (per-response
/// objects made once); <c>WholeResponse</c>: a response of 256 tokens from its first object to [DONE],
/// divided by its tokens. Per operation = per token.
/// Run: dotnet run -c Release --project benchmarks/Dynamo.Benchmarks -- --filter '*TokenPath*'
/// </summary>
[MemoryDiagnoser]
public class TokenPathBenchmarks
{
    private const int Tokens = 256;

    /// <summary>The server's metrics, made once (a registry of their own per response would dwarf the rest).</summary>
    private static readonly FrontendMetrics Metrics = new();

    private byte[][] _steadyFrames = [];
    private byte[][] _responseFrames = [];
    private int[] _prompt = [];
    private ResponsePath _steady = null!;

    [Params("chat", "completions")]
    public string Shape { get; set; } = "chat";

    [Params(false, true)]
    public bool Logprobs { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        int[] ids = TokenFixture.Ids(Tokens);
        _steadyFrames = TokenFixture.WorkerFrames(ids, Logprobs, finish: false);
        _responseFrames = TokenFixture.WorkerFrames(ids, Logprobs, finish: true);
        _prompt = TokenFixture.Ids(16);
        _steady = new ResponsePath(Shape == "chat", Logprobs, _prompt);
        foreach (byte[] frame in _steadyFrames)
        {
            _steady.Push(frame);
        }
    }

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long SteadyToken()
    {
        foreach (byte[] frame in _steadyFrames)
        {
            _steady.Push(frame);
        }

        return _steady.Body.Written;
    }

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long WholeResponse()
    {
        var path = new ResponsePath(Shape == "chat", Logprobs, _prompt);
        foreach (byte[] frame in _responseFrames)
        {
            path.Push(frame);
        }

        path.End();
        return path.Body.Written;
    }

    /// <summary>One response's objects, as the pipeline and the handler make them.</summary>
    private sealed class ResponsePath
    {
        private readonly ChoiceFrames _frames;
        private readonly Channel<ChoiceEvent> _channel;
        private readonly ChoiceEventReader _reader;
        private readonly SseWriter _sse;
        private readonly StreamingResponse _response;

        public ResponsePath(bool chat, bool logprobs, int[] prompt)
        {
            var format = !logprobs ? LogprobsFormat.None : chat ? LogprobsFormat.Chat : LogprobsFormat.Completion;
            var info = new GenerationInfo(1, 1, prompt.Length, Stream: true, IncludeUsage: false, format, logprobs ? 2 : 0);
            var post = new ChoicePostprocessor(TokenFixture.Tokenizer, prompt, [], logprobs);
            _frames = new ChoiceFrames(0, "bench-0", post);
            _channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(64) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
            _sse = new SseWriter(DiscardResponseBody.Response(Body));
            _reader = new ChoiceEventReader(_channel.Reader, _sse, TimeSpan.FromSeconds(5));
            var trace = new RequestTrace((chat ? "chatcmpl-" : "cmpl-") + "0123456789abcdef0123456789abcdef", chat ? "chat_completions" : "completions") { Model = TokenFixture.Model };
            _response = new StreamingResponse(_sse, info, trace, chat ? ResponseShape.Chat : ResponseShape.Completions, 1_700_000_000, new TokenMetrics(Metrics, trace, info.ChoiceCount));
        }

        public DiscardResponseBody Body { get; } = new();

        public void Push(byte[] frame)
        {
            ChoiceEvent e = _frames.Push(frame);
            Completed.Check(_channel.Writer.WriteAsync(e), "the channel write");
            ChoiceEvent read = Completed.Result(_reader.NextAsync(CancellationToken.None), "the read") ?? throw new InvalidOperationException("no event");
            _response.Write(read);
            Flush();
        }

        public void End()
        {
            _response.WriteEnd();
            Flush();
        }

        private void Flush()
        {
            Completed.Check(_sse.FlushAsync(CancellationToken.None), "the flush");
        }
    }
}
