using Dynamo.Load.Workloads;

namespace Dynamo.Load;

/// <summary>
/// One <c>dynamo bench serve</c> run: where to send, how much, and which workload. Bound once from the
/// command line (<see cref="Validate"/> names the flag at fault).
/// </summary>
internal sealed record LoadOptions
{
    /// <summary>The server's base URL; requests go to <c>{Url}/v1/chat/completions</c>.</summary>
    public string Url { get; init; } = "http://localhost:8000";

    /// <summary>The <c>model</c> field of every request.</summary>
    public string Model { get; init; } = "";

    /// <summary>Requests in flight at most.</summary>
    public int Concurrency { get; init; } = 1;

    /// <summary>Requests to send in all (turns, for multi-turn).</summary>
    public int NumPrompts { get; init; } = 100;

    /// <summary>Prompt length in (estimated) tokens; for traces, a cap on the trace's length (null: no cap).</summary>
    public int? InputLen { get; init; }

    /// <summary>max_tokens of every request; for traces, a cap on the trace's output length (null: no cap).</summary>
    public int? OutputLen { get; init; }

    /// <summary>Conversations started per second, Poisson arrivals (<see cref="PoissonArrivals"/>); 0: as fast as <see cref="Concurrency"/> allows.</summary>
    public double RequestRate { get; init; }

    /// <summary>Time compression of trace arrivals: 10 replays an hour of trace in six minutes.</summary>
    public double TraceScale { get; init; } = 1;

    /// <summary>Tokens (words) per trace hash-id block; the trace's lengths scale by this / 512.</summary>
    public int TraceBlockTokens { get; init; } = TraceWorkload.TraceBlockSize;

    /// <summary>Distinct system prompts of the shared-prefix workload (fewer if there are fewer requests).</summary>
    public int PrefixGroups { get; init; } = SharedPrefixWorkload.DefaultGroups;

    /// <summary>
    /// Popularity skew of the shared-prefix groups: group k (from 1) is drawn with weight 1 / k^s (Zipf);
    /// 0 draws every group equally often.
    /// </summary>
    public double PrefixZipf { get; init; }

    /// <summary>Seed of every random choice (prompt words, group assignment).</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>Defaults of the synthetic workloads when <see cref="InputLen"/> is not given.</summary>
    public const int DefaultInputLen = 256;

    /// <summary>Default max_tokens when <see cref="OutputLen"/> is not given (synthetic workloads).</summary>
    public const int DefaultOutputLen = 128;

    public static LoadOptions Default { get; } = new();

    /// <summary>Prompt length of the synthetic workloads.</summary>
    public int InputTokens => InputLen ?? DefaultInputLen;

    /// <summary>max_tokens of the synthetic workloads.</summary>
    public int OutputTokens => OutputLen ?? DefaultOutputLen;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the flag whose value is out of range.</summary>
    public void Validate()
    {
        if (!Uri.TryCreate(Url, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"--url: '{Url}' is not an http:// or https:// URL");
        }

        if (string.IsNullOrWhiteSpace(Model))
        {
            throw new ArgumentException("--model must name the served model");
        }

        if (Concurrency < 1)
        {
            throw new ArgumentException($"--concurrency must be at least 1 (got {Concurrency})");
        }

        if (NumPrompts < 1)
        {
            throw new ArgumentException($"--num-prompts must be at least 1 (got {NumPrompts})");
        }

        if (InputLen is < 1)
        {
            throw new ArgumentException($"--input-len must be at least 1 (got {InputLen})");
        }

        if (OutputLen is < 1)
        {
            throw new ArgumentException($"--output-len must be at least 1 (got {OutputLen})");
        }

        if (!double.IsFinite(RequestRate) || RequestRate < 0)
        {
            throw new ArgumentException($"--request-rate must be a finite number, 0 or more (got {RequestRate})");
        }

        if (PrefixGroups < 1)
        {
            throw new ArgumentException($"--prefix-groups must be at least 1 (got {PrefixGroups})");
        }

        if (!double.IsFinite(PrefixZipf) || PrefixZipf < 0)
        {
            throw new ArgumentException($"--prefix-zipf must be a finite number, 0 or more (got {PrefixZipf})");
        }

        if (!(TraceScale > 0) || double.IsInfinity(TraceScale))
        {
            throw new ArgumentException($"--trace-scale must be a positive number (got {TraceScale})");
        }

        if (TraceBlockTokens < 1)
        {
            throw new ArgumentException($"--trace-block-tokens must be at least 1 (got {TraceBlockTokens})");
        }
    }
}
