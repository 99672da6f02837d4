using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Frontend;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The frontend's overload flags (slots, admission queue, per-client and per-model limits, request deadline),
/// shared by `frontend` and `run`, bound into <see cref="AdmissionOptions"/>; the serve config's Frontend section
/// takes the same settings as keys (<see cref="FromConfig"/>). The caller validates the result once.
/// </summary>
internal sealed class AdmissionFlags
{
    private readonly Option<int> _maxInflight = new("--max-inflight-requests") { Description = "Requests generating at once; the next ones wait for a slot", DefaultValueFactory = _ => AdmissionOptions.Default.MaxInflightRequests };
    private readonly Option<int> _maxQueued = new("--max-queued-requests") { Description = "Requests waiting for a slot before 503 queue_full (0: none waits)", DefaultValueFactory = _ => AdmissionOptions.Default.MaxQueuedRequests };
    private readonly Option<double> _queueTimeout = new("--queue-timeout") { Description = "Seconds a request waits for a slot before 503 queue_timeout", DefaultValueFactory = _ => AdmissionOptions.Default.QueueTimeout.TotalSeconds };
    private readonly Option<int> _perClient = new("--max-inflight-per-client") { Description = "Requests of one client (its API key, else its IP) in flight before 429 client_limit (0: no limit)", DefaultValueFactory = _ => AdmissionOptions.Default.MaxInflightPerClient };
    private readonly Option<int> _perModel = new("--max-inflight-per-model") { Description = "Requests for one model in flight before 429 model_limit (0: no limit)", DefaultValueFactory = _ => AdmissionOptions.Default.MaxInflightPerModel };
    private readonly Option<double> _requestTimeout = new("--request-timeout") { Description = "Default and longest deadline of a request in seconds, then 504 deadline_exceeded (0: none)", DefaultValueFactory = _ => AdmissionOptions.Default.RequestTimeout.TotalSeconds };

    public static AdmissionFlags AddTo(Command command)
    {
        var flags = new AdmissionFlags();
        foreach (Option o in new Option[] { flags._maxInflight, flags._maxQueued, flags._queueTimeout, flags._perClient, flags._perModel, flags._requestTimeout })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary>The flags' values over <see cref="AdmissionOptions.Default"/> (not validated yet).</summary>
    public AdmissionOptions Read(ParseResult parse) => AdmissionOptions.Default with
    {
        MaxInflightRequests = parse.GetValue(_maxInflight),
        MaxQueuedRequests = parse.GetValue(_maxQueued),
        QueueTimeout = FrontendFlags.Seconds(parse.GetValue(_queueTimeout)),
        MaxInflightPerClient = parse.GetValue(_perClient),
        MaxInflightPerModel = parse.GetValue(_perModel),
        RequestTimeout = FrontendFlags.Seconds(parse.GetValue(_requestTimeout)),
    };

    /// <summary>The same settings from a serve config's Frontend section (keys named as the flags, with underscores).</summary>
    public static AdmissionOptions FromConfig(ComponentConfig c)
    {
        AdmissionOptions d = AdmissionOptions.Default;
        return d with
        {
            MaxInflightRequests = c.Int("max_inflight_requests") ?? d.MaxInflightRequests,
            MaxQueuedRequests = c.Int("max_queued_requests") ?? d.MaxQueuedRequests,
            QueueTimeout = c.Double("queue_timeout") is double queue ? FrontendFlags.Seconds(queue) : d.QueueTimeout,
            MaxInflightPerClient = c.Int("max_inflight_per_client") ?? d.MaxInflightPerClient,
            MaxInflightPerModel = c.Int("max_inflight_per_model") ?? d.MaxInflightPerModel,
            RequestTimeout = c.Double("request_timeout") is double request ? FrontendFlags.Seconds(request) : d.RequestTimeout,
        };
    }
}
