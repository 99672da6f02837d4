using System.Text.Json;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.ModelFiles;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Benchmarks;

/// <summary>
/// What the token-path benchmarks stream: the tiny synthesized model's tokenizer, and English text as that
/// tokenizer's ids, as a worker sends them (one token per generate response).
/// </summary>
internal static class TokenFixture
{
    public const string Model = "tiny";

    private const string Text = "Once upon a time, in a quiet village by the sea, there lived a curious girl who loved to watch the boats come home. ";

    private static readonly Lazy<ITokenizer> LazyTokenizer = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-benchmarks", Guid.NewGuid().ToString("N"), "tiny-chat.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32, ChatTemplate = BuiltinChatTemplates.ChatMl });
        return TokenizerBundle.FromGguf(GgufFile.Read(path)).Tokenizer;
    });

    public static ITokenizer Tokenizer => LazyTokenizer.Value;

    /// <summary>The first <paramref name="count"/> ids of the text repeated.</summary>
    public static int[] Ids(int count)
    {
        IReadOnlyList<int> ids = Tokenizer.Encode(Text, addSpecialTokens: false);
        return [.. Enumerable.Range(0, count).Select(i => ids[i % ids.Count])];
    }

    /// <summary>One generate-response frame per id; with <paramref name="logprobs"/>, its log probability and two alternatives; the last one finishing (length) when <paramref name="finish"/>.</summary>
    public static byte[][] WorkerFrames(int[] ids, bool logprobs, bool finish) =>
    [
        .. ids.Select((id, i) => JsonSerializer.SerializeToUtf8Bytes(new GenerateResponse
        {
            TokenIds = [id],
            Logprobs = logprobs ? [-0.25f] : null,
            TopLogprobs = logprobs ? [[new GenerateTopLogprob(id, -0.25f), new GenerateTopLogprob((id + 1) % 512, -2.5f)]] : null,
            FinishReason = finish && i == ids.Length - 1 ? "length" : null,
            PromptTokens = finish && i == ids.Length - 1 ? 16 : null,
            CachedTokens = finish && i == ids.Length - 1 ? 0 : null,
        }, WorkerJsonContext.Default.GenerateResponse)),
    ];
}
