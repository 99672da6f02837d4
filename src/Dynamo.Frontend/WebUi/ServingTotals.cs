namespace Dynamo.Frontend.WebUi;

/// <summary>
/// Running totals of the responses this frontend streamed (thread-safe, only ever growing): generated tokens and the
/// time to first token of each response. <see cref="StatusSampler"/> turns them into per-second rates.
/// </summary>
internal sealed class ServingTotals
{
    private long _outputTokens;
    private long _firstTokens;
    private long _firstTokenTicks;

    public long OutputTokens => Interlocked.Read(ref _outputTokens);

    /// <summary>Responses whose first token arrived.</summary>
    public long FirstTokens => Interlocked.Read(ref _firstTokens);

    /// <summary>Their times to first token, summed, in <see cref="TimeSpan"/> ticks.</summary>
    public long FirstTokenTicks => Interlocked.Read(ref _firstTokenTicks);

    public void Tokens(int count) => Interlocked.Add(ref _outputTokens, count);

    public void FirstToken(TimeSpan timeToFirstToken)
    {
        Interlocked.Add(ref _firstTokenTicks, timeToFirstToken.Ticks);
        Interlocked.Increment(ref _firstTokens);
    }
}
