namespace Dynamo.Cli.Top;

/// <summary>
/// <c>dynamo top</c>: the frontend whose <c>/metrics</c> is read, how often, and whether to print one table and exit.
/// </summary>
internal sealed record TopOptions
{
    public static TopOptions Default { get; } = new();

    /// <summary>The frontend's base address (<c>http://HOST:8000</c>); <c>/metrics</c> is read there.</summary>
    public Uri Url { get; init; } = new("http://127.0.0.1:8000/");

    /// <summary>Seconds between two reads; the rates (tok/s, req/s) are over this interval.</summary>
    public double IntervalSeconds { get; init; } = 2;

    /// <summary>Two reads <see cref="IntervalSeconds"/> apart, one table printed, exit.</summary>
    public bool Once { get; init; }

    /// <summary>Throws <see cref="CliUsageException"/> naming the flag that is wrong.</summary>
    public void Validate()
    {
        if (Url.Scheme is not ("http" or "https"))
        {
            throw new CliUsageException($"--url {Url}: not an http:// or https:// address");
        }

        if (!(IntervalSeconds is >= 0.1 and <= 3600))
        {
            throw new CliUsageException($"--interval {IntervalSeconds}: must be between 0.1 and 3600 seconds");
        }
    }
}
