using System.CommandLine;
using Dynamo.Llm.Routing;

namespace Dynamo.Cli.Commands;

/// <summary>The KV router's flags (used with --router-mode kv), shared by `frontend` and `run`.</summary>
internal sealed class KvRouterFlags
{
    private readonly Option<double> _weight = new("--kv-overlap-score-weight") { Description = "KV routing: weight of the prefill (cache overlap) term", DefaultValueFactory = _ => KvRouterOptions.Default.OverlapScoreWeight };
    private readonly Option<double> _temperature = new("--router-temperature") { Description = "KV routing: softmax temperature over costs (0 = lowest cost)", DefaultValueFactory = _ => KvRouterOptions.Default.Temperature };
    private readonly Option<int> _maxQueue = new("--router-max-queue") { Description = "KV routing: requests waiting for a free worker before 503", DefaultValueFactory = _ => KvRouterOptions.Default.MaxQueue };
    private readonly Option<double> _queueTimeout = new("--router-queue-timeout") { Description = "KV routing: seconds a request waits for a free worker before 503 router_queue_timeout", DefaultValueFactory = _ => KvRouterOptions.Default.QueueTimeout.TotalSeconds };

    private readonly Option<double> _resyncAccuracy = new("--router-resync-accuracy") { Description = "KV routing: resync a worker's index from its dump when the router's accuracy on it (predicted vs actual cached blocks over its last --router-accuracy-window requests) falls below this, 0..1 (0 = off)", DefaultValueFactory = _ => KvRouterOptions.Default.ResyncAccuracy };
    private readonly Option<int> _accuracyWindow = new("--router-accuracy-window") { Description = "KV routing: completed requests per worker over which routing accuracy is judged", DefaultValueFactory = _ => KvRouterOptions.Default.AccuracyWindow };
    private readonly Option<bool> _noKvEvents = new("--no-kv-events") { Description = "KV routing: ignore the workers' KV events and predict each worker's cache from the router's own decisions (a completed prefix counts as cached while the worker's pool is expected to keep it)" };
    private readonly Option<double?> _prefixTtl = new("--router-prefix-ttl") { Description = "KV routing with --no-kv-events: seconds a completed prefix counts as cached on its worker, instead of the pool's own eviction estimate" };

    public static KvRouterFlags AddTo(Command command)
    {
        var flags = new KvRouterFlags();
        command.Options.Add(flags._weight);
        command.Options.Add(flags._temperature);
        command.Options.Add(flags._maxQueue);
        command.Options.Add(flags._queueTimeout);
        command.Options.Add(flags._resyncAccuracy);
        command.Options.Add(flags._accuracyWindow);
        command.Options.Add(flags._noKvEvents);
        command.Options.Add(flags._prefixTtl);
        return flags;
    }

    public KvRouterOptions Read(ParseResult parse) => KvRouterOptions.Default with
    {
        OverlapScoreWeight = parse.GetValue(_weight),
        Temperature = parse.GetValue(_temperature),
        MaxQueue = parse.GetValue(_maxQueue),
        QueueTimeout = FrontendFlags.Seconds(parse.GetValue(_queueTimeout)),
        ResyncAccuracy = parse.GetValue(_resyncAccuracy),
        AccuracyWindow = parse.GetValue(_accuracyWindow),
        UseKvEvents = !parse.GetValue(_noKvEvents),
        PrefixTtl = parse.GetValue(_prefixTtl) is double ttl ? FrontendFlags.Seconds(ttl) : null,
    };

    /// <summary>The startup line that says where the router's view of the workers' caches comes from.</summary>
    public static string CacheSource(KvRouterOptions options) => options.UseKvEvents
        ? "the workers' KV events"
        : "its own decisions (--no-kv-events): a completed prefix counts as cached on its worker for " +
          (options.PrefixTtl is { } ttl ? $"{ttl.TotalSeconds:0.###} s (--router-prefix-ttl)" : "as long as that worker's pool is expected to keep it (its eviction estimate; 120 s before the first estimate)");
}
