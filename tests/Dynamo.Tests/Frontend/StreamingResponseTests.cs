using System.Text;
using Dynamo.Benchmarks;
using Dynamo.Components.Processing;
using Dynamo.Frontend.Http;
using Dynamo.Frontend.Observability;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Tests.Frontend;

/// <summary>The frontend's per-token path from a worker's frame to SSE bytes, for its allocations (the bytes are pinned by <see cref="ResponseGoldenTests"/>).</summary>
public sealed class StreamingResponseTests
{
    /// <summary>The size of a string on the 64-bit heap: header, length, characters and terminator, 8-aligned.</summary>
    private static long SizeOf(string s) => s.Length == 0 ? 0 : (22 + (2L * s.Length) + 7) & ~7L;

    private static bool CompletedAtOnce(ValueTask task) => task.IsCompletedSuccessfully;

    [Theory]
    [InlineData("chat")]
    [InlineData("completions")]
    public void Write_PlainTextWorkerFrames_AllocatesOnlyEachDeltasText(string kind)
    {
        ResponseShape shape = ResponseShape.FromKind(kind)!;
        ITokenizer tokenizer = FrontendHarness.Bundle.Value.Tokenizer;
        IReadOnlyList<int> text = tokenizer.Encode("Once upon a time, in a quiet village by the sea, there lived a curious girl. ", addSpecialTokens: false);
        byte[][] workerFrames = [.. Enumerable.Range(0, 300).Select(i => Encoding.UTF8.GetBytes($"{{\"token_ids\":[{text[i % text.Count]}]}}"))];
        // As the pipeline makes it: room for max_tokens output ids (kept for a migration) reserved up front.
        var frames = new ChoiceFrames(0, "r-0", new ChoicePostprocessor(tokenizer, [1], [], logprobs: false), expectedTokens: workerFrames.Length);
        // The body is one buffer the test owns. Over a stream (DefaultHttpContext's body) the pipe rents a 4 KiB
        // array from ArrayPool<byte>.Shared on each write and returns it on each flush, to this thread's slot;
        // a gen-2 GC anywhere in the process under high memory load trims those slots, and the next rent here
        // allocated a new array: 4,120 bytes counted against the token path.
        var sse = new SseWriter(DiscardResponseBody.Response(new DiscardResponseBody()));
        var info = new GenerationInfo(1, 1, 1, Stream: true, IncludeUsage: false, LogprobsFormat.None, 0);
        var trace = new RequestTrace(shape.IdPrefix + "0123", shape.Endpoint) { Model = FrontendHarness.Model };
        var response = new StreamingResponse(sse, info, trace, shape, 1_700_000_000, new TokenMetrics(new FrontendMetrics(), trace, 1));
        long textBytes = 0;
        void Push(byte[] frame)
        {
            ChoiceEvent e = frames.Push(frame);
            response.Write(e);
            Assert.True(CompletedAtOnce(sse.FlushAsync(CancellationToken.None)));
            textBytes += SizeOf(e.Delta.Text);
        }

        for (int i = 0; i < 50; i++)
        {
            Push(workerFrames[i]);
        }

        textBytes = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 50; i < workerFrames.Length; i++)
        {
            Push(workerFrames[i]);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(textBytes > 0);
        Assert.Equal(textBytes, allocated);
    }
}
