using System.Text;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Tests.Llm.Tokenizers;

public sealed class IncrementalDetokenizerTests(TokenizerFixture fixture) : IClassFixture<TokenizerFixture>
{
    public static TheoryData<string> Names => new(TokenizerFixture.Names);

    [Infrastructure.SharedTheory]
    [MemberData(nameof(Names))]
    public void Push_RandomIds_ConcatenationEqualsDecode(string name)
    {
        var tokenizer = fixture.Get(name);
        var random = new Random(name.GetHashCode(StringComparison.Ordinal) & 0xFFFF);
        int[] textIds = [.. tokenizer.Encode("Hi 🐶 naïve 你好 😺👍🏽 ", addSpecialTokens: true)];
        for (int trial = 0; trial < 200; trial++)
        {
            var ids = new int[random.Next(0, 24)];
            for (int i = 0; i < ids.Length; i++)
            {
                ids[i] = random.Next(4) switch
                {
                    0 => random.Next(tokenizer.VocabSize),
                    1 => textIds[random.Next(textIds.Length)],
                    _ => random.Next(Math.Min(300, tokenizer.VocabSize)),
                };
            }

            foreach (bool skip in new[] { false, true })
            {
                var detokenizer = new IncrementalDetokenizer(tokenizer, skip);
                var streamed = new StringBuilder();
                foreach (int id in ids)
                {
                    string piece = detokenizer.Push(id);
                    Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), "a piece ends inside a surrogate pair");
                    streamed.Append(piece);
                }

                streamed.Append(detokenizer.Flush());
                Assert.Equal(tokenizer.Decode(ids, skip), streamed.ToString());
            }
        }
    }

    [Infrastructure.SharedTheory]
    [MemberData(nameof(Names))]
    public void Push_EmojiSplitIntoByteTokens_HoldsBytesUntilComplete(string name)
    {
        var tokenizer = fixture.Get(name);
        var ids = tokenizer.Encode("a🐶b", addSpecialTokens: false);
        var detokenizer = new IncrementalDetokenizer(tokenizer, skipSpecialTokens: true);

        var pieces = ids.Select(detokenizer.Push).Append(detokenizer.Flush()).ToList();

        Assert.Equal(tokenizer.Decode(ids, true), string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD', StringComparison.Ordinal));
    }

    [Infrastructure.SharedFact]
    public void Push_WithPromptContext_KeepsLeadingSpaceOfContinuation()
    {
        var tokenizer = fixture.Get("mistral-7b-v0.1");
        var prompt = tokenizer.Encode("Hello", addSpecialTokens: true);
        var all = tokenizer.Encode("Hello world", addSpecialTokens: true);
        var generated = all.Skip(prompt.Count).ToList();
        var detokenizer = new IncrementalDetokenizer(tokenizer, skipSpecialTokens: true, prompt);

        string text = string.Concat(generated.Select(detokenizer.Push)) + detokenizer.Flush();

        Assert.Equal(" world", text);
        Assert.Equal("world", tokenizer.Decode(generated, skipSpecialTokens: true));
    }
}
