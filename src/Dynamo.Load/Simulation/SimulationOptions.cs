using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;

namespace Dynamo.Load.Simulation;

/// <summary>
/// One simulation: the workers (count and cost model; aggregated, or decode workers beside prefill workers), the router
/// modes to compare, the event plane's delay, and for a disaggregated deployment the disaggregation settings and the KV link.
/// </summary>
internal sealed record SimulationOptions
{
    /// <summary>The defaults.</summary>
    public static SimulationOptions Default { get; } = new();

    /// <summary>Simulated workers (<c>--workers</c>); with <see cref="PrefillWorkers"/>, the decode workers (<c>--decode-workers</c>).</summary>
    public int Workers { get; init; } = 8;

    /// <summary>Prefill workers (<c>--prefill-workers</c>); 0: an aggregated deployment, every worker prefills its own requests.</summary>
    public int PrefillWorkers { get; init; }

    /// <summary>When a request prefills on a prefill worker (the real rule, <see cref="DisaggregationPolicy"/>); only with prefill workers.</summary>
    public DisaggregationSettings Disaggregation { get; init; } = DisaggregationSettings.Default;

    /// <summary>The link a remote prefill's KV crosses (bytes a token from the profile, <c>--kv-transfer-gbps</c>); only with prefill workers.</summary>
    public SimulatedKvLink KvLink { get; init; } = WorkerProfiles.Link(WorkerProfiles.Default);

    /// <summary>Router modes, run one after the other on the same workload (<c>--router-modes</c>).</summary>
    public IReadOnlyList<string> Modes { get; init; } = [RouterModes.Kv, RouterModes.RoundRobin, RouterModes.Random];

    /// <summary>The profile's name, for the report (<c>--profile</c>).</summary>
    public string Profile { get; init; } = WorkerProfiles.Default;

    /// <summary>Each worker's mocker: pool, batch limits and cost model (the profile's, with any override).</summary>
    public MockerOptions Mocker { get; init; } = WorkerProfiles.Get(WorkerProfiles.Default);

    /// <summary>The KV router's settings (its seed is set from <see cref="Seed"/> when it has none).</summary>
    public KvRouterOptions KvRouter { get; init; } = KvRouterOptions.Default;

    /// <summary>Virtual time a KV event takes from a worker to the router (<c>--kv-event-delay-ms</c>); 0 applies it at once.</summary>
    public TimeSpan KvEventDelay { get; init; }

    /// <summary>KV router replicas (<c>--router-replicas</c>): requests go to them round-robin; each gets every KV event and load report.</summary>
    public int RouterReplicas { get; init; } = 1;

    /// <summary>Virtual time one replica's charge takes to reach the others (<c>--replica-sync-delay-ms</c>); 0 applies it at once.</summary>
    public TimeSpan ReplicaSyncDelay { get; init; }

    /// <summary>How often a worker reports its load to the router, in virtual time (a real worker: every second).</summary>
    public TimeSpan LoadReportInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Seed of the random router and the KV router's tie-breaks (<c>--seed</c>).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting; returns this.</summary>
    public SimulationOptions Validate()
    {
        if (Workers is < 1 or > 100_000)
        {
            throw new ArgumentException($"--workers must be 1..100000 (got {Workers})");
        }

        if (PrefillWorkers is < 0 or > 100_000)
        {
            throw new ArgumentException($"--prefill-workers must be 0..100000 (got {PrefillWorkers})");
        }

        if (!(KvLink.Gbps > 0) || !double.IsFinite(KvLink.Gbps))
        {
            throw new ArgumentException($"--kv-transfer-gbps must be a positive number (got {KvLink.Gbps})");
        }

        if (Modes.Count == 0)
        {
            throw new ArgumentException("--router-modes: name at least one of kv, round-robin, random");
        }

        foreach (string mode in Modes)
        {
            if (mode is not (RouterModes.Kv or RouterModes.RoundRobin or RouterModes.Random))
            {
                throw new ArgumentException($"--router-modes: '{mode}' is not kv, round-robin or random");
            }
        }

        if (KvEventDelay < TimeSpan.Zero)
        {
            throw new ArgumentException($"--kv-event-delay-ms must be 0 or more (got {KvEventDelay.TotalMilliseconds})");
        }

        if (RouterReplicas is < 1 or > 64)
        {
            throw new ArgumentException($"--router-replicas must be 1..64 (got {RouterReplicas})");
        }

        if (ReplicaSyncDelay < TimeSpan.Zero)
        {
            throw new ArgumentException($"--replica-sync-delay-ms must be 0 or more (got {ReplicaSyncDelay.TotalMilliseconds})");
        }

        if (LoadReportInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("the load report interval must be positive");
        }

        if (!double.IsPositiveInfinity(Mocker.SpeedupRatio) && Mocker.SpeedupRatio != 1)
        {
            throw new ArgumentException("--speedup-ratio has no meaning in virtual time (leave it at 1)");
        }

        Mocker.Validate();
        KvRouter.Validate();
        Disaggregation.Validate();
        KvLink.Validate();
        return this;
    }
}
