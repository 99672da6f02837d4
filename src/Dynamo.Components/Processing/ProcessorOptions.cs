using Dynamo.Llm.Routing;
using Dynamo.Runtime;

namespace Dynamo.Components.Processing;

/// <summary>
/// Settings of the processing pipeline (preprocess -> route -> postprocess), wherever it runs: in a
/// frontend's own process or as a Processor component. Bound from the <c>frontend</c>, <c>run</c>,
/// <c>processor</c> flags and the graphs' config sections; validated at startup.
/// </summary>
public sealed record ProcessorOptions
{
    /// <summary>The defaults (namespace "dynamo", round-robin).</summary>
    public static ProcessorOptions Default { get; } = new();

    /// <summary>The namespace whose model cards are served (--namespace).</summary>
    public string Namespace { get; init; } = "dynamo";

    /// <summary>How a model's worker is chosen (--router-mode): "round-robin", "random" or "kv" (cache overlap and load).</summary>
    public string RouterMode { get; init; } = RouterModes.RoundRobin;

    /// <summary>Where tokenizer files from model cards are cached.</summary>
    public string TokenizerCacheDirectory { get; init; } = Path.Combine(Path.GetTempPath(), "dynamo-frontend-tokenizers");

    /// <summary>KV router settings (--kv-overlap-score-weight, --router-temperature, --router-max-queue, ...), used with --router-mode kv.</summary>
    public KvRouterOptions KvRouter { get; init; } = KvRouterOptions.Default;

    /// <summary>
    /// Postprocessed deltas a response may have waiting for its HTTP writer (all choices together). When
    /// the client reads slower than the workers generate, the workers' streams wait (back-pressure to the
    /// engine through the request plane): nothing is dropped.
    /// </summary>
    public int ChoiceBufferCapacity { get; init; } = 64;

    /// <summary>
    /// How many times one stream may move to another worker when its worker dies, stalls, stops or fails after
    /// the stream started (--migration-limit; 0: never, the client gets the error).
    /// </summary>
    public int MigrationLimit { get; init; } = 3;

    /// <summary>
    /// How long a migrating stream waits for a worker to appear when none is left (--migration-wait): a single
    /// worker restarting. Never longer: the client then gets a 503.
    /// </summary>
    public TimeSpan MigrationWaitTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Makes each endpoint's router instead of <see cref="RouterMode"/>: tests hold the pipeline to the
    /// <see cref="IWorkerRouter"/> contract with routers of their own. Null in the product.
    /// </summary>
    internal Func<EndpointAddress, IWorkerRouter>? RouterFactory { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public ProcessorOptions Validate()
    {
        static void Check(bool ok, string flag, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{flag}: {message}", flag);
            }
        }

        Check(IsName(Namespace), "--namespace", $"'{Namespace}' must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'");
        Check(RouterModes.Names.Contains(RouterMode), "--router-mode", $"'{RouterMode}' is not one of {string.Join(", ", RouterModes.Names)}");
        Check(!string.IsNullOrWhiteSpace(TokenizerCacheDirectory), "--tokenizer-cache", "must be a directory");
        Check(MigrationLimit is >= 0 and <= 100, "--migration-limit", $"{MigrationLimit} is outside 0..100");
        Check(MigrationWaitTimeout >= TimeSpan.Zero && MigrationWaitTimeout <= TimeSpan.FromMinutes(10), "--migration-wait", $"{MigrationWaitTimeout.TotalSeconds} s is outside 0..600 s");
        Check(ChoiceBufferCapacity >= 1, nameof(ChoiceBufferCapacity), $"{ChoiceBufferCapacity} must be at least 1");
        KvRouter.Validate();
        return this;
    }

    private static bool IsName(string value)
    {
        try
        {
            _ = new EndpointAddress(value, "x", "x");
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
