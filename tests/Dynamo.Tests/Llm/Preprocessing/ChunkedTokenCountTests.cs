using System.Text;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Tokenizers;
using Dynamo.Tests.Frontend;

namespace Dynamo.Tests.Llm.Preprocessing;

public sealed class ChunkedTokenCountTests
{
    [Fact]
    public void CountPast_RandomLongTexts_RefusesOnlyWhatTheWholeTokenizationPutsOverTheLimit()
    {
        ITokenizer tokenizer = FrontendHarness.Bundle.Value.Tokenizer;
        var random = new Random(11);
        string[] pieces = ["the ", "hello ", "world", "\n", "  ", "<|im_start|>", "é", "日本", "\ud83d\ude00", "x", " ", "1234"];
        int refused = 0;
        for (int i = 0; i < 30; i++)
        {
            var text = new StringBuilder();
            int length = random.Next(ChunkedTokenCount.ChunkChars, 5 * ChunkedTokenCount.ChunkChars);
            while (text.Length < length)
            {
                text.Append(pieces[random.Next(pieces.Length)]);
            }

            int whole = tokenizer.Encode(text.ToString(), addSpecialTokens: false).Count;
            foreach (int limit in new[] { whole / 2, whole - 100, whole - 1, whole })
            {
                if (ChunkedTokenCount.CountPast(tokenizer, [text.ToString()], limit) is { } past)
                {
                    refused++;
                    Assert.True(whole > limit, $"refused a text of {whole} tokens at limit {limit} (counted {past.Tokens})");
                }
            }
        }

        Assert.True(refused >= 30, $"only {refused} refusals: the early count never decided");
    }

    [Fact]
    public void Preprocess_MessagesFarOverTheContext_ContextLengthExceededAfterCountingAPart()
    {
        var preprocessor = new Preprocessor(FrontendHarness.Bundle.Value, 256);
        string text = string.Concat(Enumerable.Repeat("many words here ", 40_000));
        ChatCompletionRequest chat = OpenAiRequestReader.ReadChat(Encoding.UTF8.GetBytes($$"""{"model":"m","messages":[{"role":"user","content":"{{text}}"}]}"""));
        CompletionRequest completion = OpenAiRequestReader.ReadCompletion(Encoding.UTF8.GetBytes($$"""{"model":"m","prompt":["short","{{text}}"]}"""));

        OpenAiException chatError = Assert.Throws<OpenAiException>(() => preprocessor.Preprocess(chat));
        OpenAiException relayError = Assert.Throws<OpenAiException>(() => preprocessor.RefuseFarOverContext(chat));
        OpenAiException completionError = Assert.Throws<OpenAiException>(() => preprocessor.Preprocess(completion));

        Assert.Equal(("context_length_exceeded", "messages"), (chatError.Code, chatError.Param));
        Assert.Equal(("context_length_exceeded", "messages"), (relayError.Code, relayError.Param));
        Assert.Equal(("context_length_exceeded", "prompt"), (completionError.Code, completionError.Param));
        Assert.Contains($"of its {text.Length} characters", chatError.Message, StringComparison.Ordinal);
    }
}
