namespace Dynamo.Frontend;

/// <summary>
/// The frontend's overload limits (README.md at the repository root, "Overload"): how many requests generate
/// at once, how many wait for a slot and for how long, the per-client and per-model limits, and the default
/// deadline of a request. Bound from the <c>frontend</c> and <c>run</c> flags and the serve config's Frontend
/// section; validated at startup with messages that name the flag.
/// </summary>
public sealed record AdmissionOptions
{
    /// <summary>The defaults: 256 generating, 1024 waiting at most 30 s, no per-client or per-model limit, a 600 s deadline.</summary>
    public static AdmissionOptions Default { get; } = new();

    /// <summary>Requests generating at once (<c>--max-inflight-requests</c>); the next ones wait for a slot.</summary>
    public int MaxInflightRequests { get; init; } = 256;

    /// <summary>Requests waiting for a slot (<c>--max-queued-requests</c>; 0: none waits, a request finding no slot is refused).</summary>
    public int MaxQueuedRequests { get; init; } = 1024;

    /// <summary>How long a request waits for a slot before it is refused (<c>--queue-timeout</c>).</summary>
    public TimeSpan QueueTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Requests of one client in the frontend at once, waiting or generating (<c>--max-inflight-per-client</c>; 0: no
    /// limit). A client is its <c>Authorization: Bearer</c> key when it sends one, else its IP address.
    /// </summary>
    public int MaxInflightPerClient { get; init; }

    /// <summary>Requests for one model in the frontend at once, waiting or generating (<c>--max-inflight-per-model</c>; 0: no limit).</summary>
    public int MaxInflightPerModel { get; init; }

    /// <summary>
    /// The deadline of a request that names none, and the longest one a request may name (<c>--request-timeout</c>;
    /// zero: none by default and no ceiling). Counted from the request's arrival.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>The longest deadline a request may name itself (7 days), whatever <see cref="RequestTimeout"/> is.</summary>
    public static TimeSpan MaxRequestTimeout { get; } = TimeSpan.FromDays(7);

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public AdmissionOptions Validate()
    {
        static void Check(bool ok, string flag, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{flag}: {message}", flag);
            }
        }

        Check(MaxInflightRequests is >= 1 and <= 1_000_000, "--max-inflight-requests", $"{MaxInflightRequests} is outside 1..1000000");
        Check(MaxQueuedRequests is >= 0 and <= 1_000_000, "--max-queued-requests", $"{MaxQueuedRequests} is outside 0..1000000 (0: no request waits)");
        Check(QueueTimeout > TimeSpan.Zero && QueueTimeout <= TimeSpan.FromHours(1), "--queue-timeout", $"{QueueTimeout.TotalSeconds} s is outside (0, 3600] s");
        Check(MaxInflightPerClient >= 0, "--max-inflight-per-client", $"{MaxInflightPerClient} must be 0 (no limit) or more");
        Check(MaxInflightPerModel >= 0, "--max-inflight-per-model", $"{MaxInflightPerModel} must be 0 (no limit) or more");
        Check(RequestTimeout >= TimeSpan.Zero && RequestTimeout <= MaxRequestTimeout, "--request-timeout", $"{RequestTimeout.TotalSeconds} s is outside 0..{MaxRequestTimeout.TotalSeconds} s (0: none)");
        return this;
    }
}
