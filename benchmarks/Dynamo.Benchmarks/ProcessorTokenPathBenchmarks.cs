using BenchmarkDotNet.Attributes;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;
using Dynamo.Frontend.Observability;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Benchmarks;

/// <summary>
/// The per-token path through a Processor component, both sides of its wire: <c>ProcessorSide</c>, a
/// worker's generate-response frame read and postprocessed by the processor's pipeline and written as its
/// delta frame (<see cref="ProcessorServer"/>); <c>FrontendSide</c>, that delta frame read by the
/// frontend's relay (<see cref="ProcessorRelay"/>, its token ids kept in the choice's <see cref="TokenLog"/>,
/// a fresh one per 256-token response as in a request) and written as SSE bytes (<see cref="StreamingResponse"/>,
/// <see cref="SseWriter"/>). Tokens in the middle of a long response; the request plane between them is not
/// included. Per operation = per token.
/// Run: dotnet run -c Release --project benchmarks/Dynamo.Benchmarks -- --filter '*ProcessorTokenPath*'
/// </summary>
[MemoryDiagnoser]
public class ProcessorTokenPathBenchmarks
{
    private const int Tokens = 256;

    private byte[][] _workerFrames = [];
    private byte[][] _processorFrames = [];
    private ChoiceFrames _frames = null!;
    private SseWriter _sse = null!;
    private StreamingResponse _response = null!;
    private readonly DiscardResponseBody _body = new();

    [Params("chat", "completions")]
    public string Shape { get; set; } = "chat";

    [GlobalSetup]
    public void Setup()
    {
        bool chat = Shape == "chat";
        int[] prompt = TokenFixture.Ids(16);
        _workerFrames = TokenFixture.WorkerFrames(TokenFixture.Ids(Tokens), logprobs: false, finish: false);
        _frames = new ChoiceFrames(0, "bench-0", new ChoicePostprocessor(TokenFixture.Tokenizer, prompt, [], logprobs: false));
        _processorFrames = [.. _workerFrames.Select(f => ProcessorServer.SerializeDelta(_frames.Push(f)))];

        var info = new GenerationInfo(1, 1, prompt.Length, Stream: true, IncludeUsage: false, LogprobsFormat.None, 0);
        _sse = new SseWriter(DiscardResponseBody.Response(_body));
        var trace = new RequestTrace((chat ? "chatcmpl-" : "cmpl-") + "0123456789abcdef0123456789abcdef", chat ? "chat_completions" : "completions") { Model = TokenFixture.Model };
        _response = new StreamingResponse(_sse, info, trace, chat ? ResponseShape.Chat : ResponseShape.Completions, 1_700_000_000, new TokenMetrics(new FrontendMetrics(), trace, info.ChoiceCount));
        FrontendSide();
    }

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long ProcessorSide()
    {
        long bytes = 0;
        foreach (byte[] frame in _workerFrames)
        {
            bytes += ProcessorServer.SerializeDelta(_frames.Push(frame)).Length;
        }

        return bytes;
    }

    [Benchmark(OperationsPerInvoke = Tokens)]
    public long FrontendSide()
    {
        TokenLog[] logs = [new()];
        foreach (byte[] frame in _processorFrames)
        {
            _response.Write(ProcessorRelay.ReadEvent(frame, logs));
            Completed.Check(_sse.FlushAsync(CancellationToken.None), "the flush");
        }

        return _body.Written;
    }
}
