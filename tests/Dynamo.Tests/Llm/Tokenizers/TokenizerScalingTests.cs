using System.Diagnostics;
using System.Text;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.Tokenizers;

/// <summary>Encoding time grows linearly with the text: a wall-clock bound, so alone in <see cref="TimingCollection"/>.</summary>
[Collection(TimingCollection.Name)]
public sealed class TokenizerScalingTests(TokenizerFixture fixture) : IClassFixture<TokenizerFixture>
{
    [SharedTheory]
    [InlineData("tinystories-656k")]
    [InlineData("llama3")]
    [InlineData("mistral-7b-v0.1")]
    [InlineData("gguf-llama2")]
    public void Encode_100KbText_IsLinearAndRoundTrips(string name)
    {
        var tokenizer = fixture.Get(name);
        string small = RandomText(10_000, seed: 7);
        string large = RandomText(100_000, seed: 8);
        tokenizer.Encode(small, false);

        var clock = Stopwatch.StartNew();
        tokenizer.Encode(small, addSpecialTokens: false);
        var smallTime = clock.Elapsed;
        clock.Restart();
        var ids = tokenizer.Encode(large, addSpecialTokens: false);
        var largeTime = clock.Elapsed;

        // Not a speed claim: a quadratic merge loop would take minutes on 100 KB (it takes well under a
        // second here), so a bound this loose catches it without failing on a busy machine.
        Assert.True(largeTime < TimeSpan.FromSeconds(20) + smallTime * 100, $"{name}: 10 KB {smallTime.TotalMilliseconds:F0} ms, 100 KB {largeTime.TotalMilliseconds:F0} ms");
        if (name != "tinystories-656k")
        {
            Assert.Equal(large, tokenizer.Decode(ids, skipSpecialTokens: true));
        }
    }

    private static string RandomText(int length, int seed)
    {
        var text = new StringBuilder();
        var random = new Random(seed);
        string[] words = ["Once", "upon", "a", "time", "there", "was", "naïve", "café", "🐶", "1234", "\n", "  ", "don't"];
        while (text.Length < length)
        {
            text.Append(words[random.Next(words.Length)]).Append(' ');
        }

        return text.ToString();
    }
}
