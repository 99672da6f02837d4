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

    [Theory]
    [InlineData("abc XY h\u00e9llo \u4e16\u754c \U0001F30A XYZ tail", "XYZ")]
    [InlineData("sea \U0001F30A\U0001F30A shore \u00e9\u00e9 end", "\U0001F30A s")]
    [InlineData("no stop here: \u4e16\u754c and \u00e9", "")]
    public void Replay_EveryCut_TheNextPushesContinueTheTextExactly(string text, string stop)
    {
        IReadOnlyList<int> ids = Tokenizer.Encode(text, addSpecialTokens: false);
        string[] stops = stop.Length > 0 ? [stop] : [];
        var whole = new ChoicePostprocessor(Tokenizer, [1], stops, logprobs: false);
        string reference = PushEach(whole, ids, 0);
        Assert.Contains(Enumerable.Range(1, ids.Count - 1), cut => Tokenizer.Decode([.. ids.Take(cut)], false).EndsWith('\uFFFD'));

        int cuts = 0;
        for (int cut = 0; cut <= ids.Count; cut++)
        {
            var before = new ChoicePostprocessor(Tokenizer, [1], stops, logprobs: false);
            string shown = PushEach(before, ids.Take(cut).ToList(), 0, finish: false);
            if (before.IsFinished)
            {
                break;
            }

            var after = new ChoicePostprocessor(Tokenizer, [1], stops, logprobs: false);
            after.Replay([.. ids.Take(cut)]);
            string rest = PushEach(after, ids.Skip(cut).ToList(), shown.Length);

            Assert.Equal(reference, shown + rest);
            Assert.Equal(whole.CompletionTokens, after.CompletionTokens);
            Assert.Equal(whole.FinishReason, after.FinishReason);
            cuts++;
        }

        Assert.True(cuts > ids.Count / 2, $"{cuts} cuts of {ids.Count} tokens");
    }

    /// <summary>Pushes <paramref name="ids"/> one response each (with <paramref name="finish"/>, the last with finish "length") and returns the text, checking each delta's offset.</summary>
    private static string PushEach(ChoicePostprocessor post, IReadOnlyList<int> ids, int offset, bool finish = true)
    {
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < ids.Count && !post.IsFinished; i++)
        {
            ChoiceDelta d = post.Push(new GenerateResponse { TokenIds = [ids[i]], FinishReason = finish && i == ids.Count - 1 ? "length" : null });
            Assert.Equal(offset + text.Length, d.TextOffset);
            text.Append(d.Text);
        }

        if (finish && !post.IsFinished)
        {
            // Every token had come before the cut: only the last response, with the finish, is left.
            text.Append(post.Push(new GenerateResponse { TokenIds = [], FinishReason = "length" }).Text);
        }

        return text.ToString();
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
