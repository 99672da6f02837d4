using Dynamo.Llm.Preprocessing;

namespace Dynamo.Tests.Llm.Preprocessing;

public sealed class StopStringMatcherTests
{
    private static (string Shown, bool Stopped) Feed(IReadOnlyList<string> stops, params string[] pieces)
    {
        var m = new StopStringMatcher(stops);
        string shown = string.Concat(pieces.Select(m.Push));
        return (shown + m.Flush(), m.Stopped);
    }

    [Theory]
    [InlineData("Hello", " wor", "ld", "<", "/s", "> tail")]
    [InlineData("Hello world<", "/", "s", ">")]
    [InlineData("Hello world</s>")]
    [InlineData("H", "e", "l", "l", "o", " ", "w", "o", "r", "l", "d", "<", "/", "s", ">", "!")]
    public void Push_StopSplitAcrossPieces_CutsBeforeItAndNeverLeaksAPart(params string[] pieces)
    {
        var m = new StopStringMatcher(["</s>"]);
        var shown = new List<string>();

        foreach (string piece in pieces)
        {
            shown.Add(m.Push(piece));
            Assert.DoesNotContain('<', string.Concat(shown));
        }

        Assert.True(m.Stopped);
        Assert.Equal("Hello world", string.Concat(shown) + m.Flush());
    }

    [Fact]
    public void Push_SeveralStops_EarliestWins()
    {
        (string shown, bool stopped) = Feed(["world", "lo w", "Hel"], "xx Hello world");

        Assert.True(stopped);
        Assert.Equal("xx ", shown);
    }

    [Fact]
    public void Push_SeveralStopsSplit_EarliestWinsEvenIfLongerOneCompletesLater()
    {
        (string shown, bool stopped) = Feed(["abcdef", "cd"], "ab", "c", "d", "ef");

        Assert.True(stopped);
        Assert.Equal("ab", shown);
    }

    [Fact]
    public void Push_FalseStart_ReleasedOnNextPush()
    {
        var m = new StopStringMatcher(["STOP"]);

        Assert.Equal("abc ", m.Push("abc ST"));
        Assert.Equal("STand", m.Push("and"));
        Assert.False(m.Stopped);
    }

    [Fact]
    public void Flush_FalseStartAtEnd_Released()
    {
        var m = new StopStringMatcher(["STOP"]);

        Assert.Equal("abc ", m.Push("abc STO"));
        Assert.Equal("STO", m.Flush());
        Assert.Equal("", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void Push_NoStops_PassesThrough()
    {
        var m = new StopStringMatcher([]);

        Assert.Equal("a<", m.Push("a<"));
        Assert.Equal("/s>", m.Push("/s>"));
        Assert.Equal("", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void Push_AfterStopped_ReturnsNothing()
    {
        var m = new StopStringMatcher(["\n\n"]);

        Assert.Equal("one", m.Push("one\n\ntwo"));
        Assert.True(m.Stopped);
        Assert.Equal("", m.Push("three"));
        Assert.Equal("", m.Push("\n\n"));
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void Push_NonAsciiStop_MatchesOrdinally()
    {
        (string shown, bool stopped) = Feed(["ß»"], "Straße ", "ß", "» end");

        Assert.True(stopped);
        Assert.Equal("Straße ", shown);
    }

    [Fact]
    public void Push_EmptyPiece_ReturnsNothingAndKeepsPending()
    {
        var m = new StopStringMatcher(["END"]);

        Assert.Equal("x", m.Push("xE"));
        Assert.Equal("", m.Push(""));
        Assert.Equal("", m.Push("N"));
        Assert.Equal("", m.Push("D"));
        Assert.True(m.Stopped);
    }
}
