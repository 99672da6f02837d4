using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Llm.Disaggregation;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The disaggregation flags of a worker (the guides' decode-side config keys as flags): whether it takes
/// remote prefills, the thresholds it writes to the discovery store at start, and the KV transfer backend.
/// </summary>
internal sealed class DisaggregationFlags
{
    private readonly Option<bool?> _remotePrefill = new("--remote-prefill") { Description = "Aggregated/decode worker: take remote prefills when the model has prefill workers (true/false; default true)" };
    private readonly Option<bool?> _conditional = new("--conditional-disagg") { Description = "Prefill remotely only by the rule of --max-local-prefill-length and --max-prefill-queue-size (true/false; default true); written to the discovery store" };
    private readonly Option<int?> _maxLocal = new("--max-local-prefill-length") { Description = $"Prompts whose uncached part is at most this many tokens prefill locally (default {DisaggregationSettings.Default.MaxLocalPrefillLength}); written to the discovery store" };
    private readonly Option<int?> _maxQueue = new("--max-prefill-queue-size") { Description = $"Prefill remotely only while fewer requests wait at the prefill workers (default {DisaggregationSettings.Default.MaxPrefillQueueSize}); written to the discovery store" };
    private readonly Option<string> _backend = new("--disaggregation-transfer-backend") { Description = $"How KV moves between workers: {string.Join(", ", WorkerSettings.TransferBackends)} (nixl: the guides' name, served by the built-in TCP transfer)", DefaultValueFactory = _ => "tcp" };
    private readonly Option<string?> _host = new("--kv-transfer-host") { Description = "Where this worker's KV transfer listens for prefill workers: 127.0.0.1 (default, this host only), an address of this host, 0.0.0.0 (every interface, advertising the address this host reaches etcd from), or a host name (every interface, advertised as given)" };
    private readonly Option<int> _port = new("--kv-transfer-port") { Description = "TCP port of this worker's KV transfer (0: any free port)", DefaultValueFactory = _ => 0 };

    public static DisaggregationFlags AddTo(Command command)
    {
        var flags = new DisaggregationFlags();
        foreach (Option o in new Option[] { flags._remotePrefill, flags._conditional, flags._maxLocal, flags._maxQueue, flags._backend, flags._host, flags._port })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary><paramref name="settings"/> with the flags given applied.</summary>
    public WorkerSettings Apply(ParseResult parse, WorkerSettings settings)
    {
        DisaggregationSettings? thresholds = DisaggregationSettings.FromGiven(parse.GetValue(_conditional), parse.GetValue(_maxLocal), parse.GetValue(_maxQueue));
        return settings with
        {
            RemotePrefill = parse.GetValue(_remotePrefill) ?? true,
            Disaggregation = thresholds,
            TransferBackend = parse.GetValue(_backend)!,
            KvTransferHost = parse.GetValue(_host),
            KvTransferPort = parse.GetValue(_port),
        };
    }
}
