using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Tokenizers;
using Dynamo.Tests.Frontend;

namespace Dynamo.Tests.Llm.Preprocessing;

public sealed class ChoicePostprocessorTests
{
    private static ITokenizer Tokenizer => FrontendHarness.Bundle.Value.Tokenizer;

    [Fact]
    public void Push_StopStringAcrossTokens_CutBeforeItFinishStopAndLaterResponsesIgnored()
    {
        IReadOnlyList<int> ids = Tokenizer.Encode("abcXYZdef", addSpecialTokens: false);
        var post = new ChoicePostprocessor(Tokenizer, [1], ["XYZ"], logprobs: false);

        string text = string.Concat(ids.Select(id => post.Push(new GenerateResponse { TokenIds = [id] }).Text));

        string full = FrontendServerTests.Detokenize([1], ids);
        Assert.EndsWith("abcXYZdef", full);
        Assert.Equal(full[..full.IndexOf("XYZ", StringComparison.Ordinal)], text);
        Assert.Equal("stop", post.FinishReason);
        Assert.True(post.CompletionTokens < ids.Count);
        Assert.Equal("", post.Push(new GenerateResponse { TokenIds = [ids[0]] }).Text);
    }

    [Fact]
    public void Push_LengthFinish_FlushesHeldTextAndMapsReason()
    {
        IReadOnlyList<int> ids = Tokenizer.Encode("abcX", addSpecialTokens: false);
        var post = new ChoicePostprocessor(Tokenizer, [1], ["XYZ"], logprobs: false);

        string text = string.Concat(ids.Select((id, i) => post.Push(new GenerateResponse { TokenIds = [id], FinishReason = i == ids.Count - 1 ? "length" : null, PromptTokens = 1 }).Text));

        Assert.Equal(FrontendServerTests.Detokenize([1], ids), text);
        Assert.EndsWith("abcX", text);
        Assert.Equal("length", post.FinishReason);
        Assert.Equal(1, post.PromptTokens);
    }

    [Fact]
    public void Push_Logprobs_NonFiniteSanitizedAndTopListed()
    {
        var post = new ChoicePostprocessor(Tokenizer, [1], [], logprobs: true);

        ChoiceDelta d = post.Push(new GenerateResponse { TokenIds = [300], Logprobs = [float.NegativeInfinity], TopLogprobs = [[new GenerateTopLogprob(300, -0.5f), new GenerateTopLogprob(301, -1f)]] });

        var entry = Assert.Single(d.Logprobs!);
        Assert.Equal(ChoicePostprocessor.MinLogprob, entry.Logprob);
        Assert.Equal(Tokenizer.Decode([300], false), entry.Token);
        Assert.Equal(2, entry.TopLogprobs.Count);
        Assert.Equal(-1f, entry.TopLogprobs[1].Logprob);
    }
}
