using System.Threading.Channels;
using Dynamo.Components.Workers;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;

namespace Dynamo.Load.Simulation;

internal sealed partial class Simulator
{
    /// <summary>
    /// A disaggregated deployment in the simulation: the real <see cref="DisaggregatedRouter"/> behind the decode router
    /// (the rule of <see cref="DisaggregationPolicy"/> on the decode worker's predicted hit and the prefill workers' reported
    /// queue, then the prefill worker by the same router mode over the prefill pool), and the decode worker's side as the
    /// real decode worker does it (Dynamo.Components' RemotePrefillLeg): the request goes to the decode engine with a
    /// <see cref="DeferredKvImport"/> of all its prompt but the last token; once the engine reserved the blocks, the
    /// prefill worker's engine computes them (<see cref="EngineRequest.ExportKv"/>, one token); the exported payload
    /// crosses the <see cref="SimulatedKvLink"/> in virtual time and is delivered to the import, which the decode engine
    /// takes on its next step (or prefills locally when it could not reserve, or the prefill failed).
    /// <para>
    /// One departure from a real deployment: the prefill pool's KV router does not queue (its max queue is 0), so that
    /// every decision completes within its event; with every prefill worker saturated it refuses, and the request prefills
    /// locally (<see cref="PrefillReasons.PrefillRejected"/>), as a real router's refusal makes it.
    /// </para>
    /// </summary>
    private sealed class Disaggregation : IAsyncDisposable
    {
        private readonly Simulator _simulator;
        private readonly Worker[] _prefill;
        private readonly IWorkerRouter _prefillRouter;

        /// <summary>The prefill pool's KV router (null unless the mode is kv).</summary>
        public KvRouter? PrefillKv { get; }
        private readonly DecidedRouter _decided;
        private readonly DisaggregatedRouter _router;
        private readonly DisaggregationCounters _counters = new();
        private readonly SimulatedKvLink _link;
        private readonly List<double> _transferMs = [];

        public Disaggregation(Simulator simulator)
        {
            _simulator = simulator;
            SimulationOptions options = simulator._options;
            _link = options.KvLink;
            (_prefillRouter, KvRouter? kv) = simulator.CreateRouter(options.KvRouter with { MaxQueue = 0 }, options.Seed + 1);
            PrefillKv = kv;
            _prefill = new Worker[options.PrefillWorkers];
            long[] candidates = new long[_prefill.Length];
            for (int i = 0; i < _prefill.Length; i++)
            {
                candidates[i] = options.Workers + i + 1;
                _prefill[i] = simulator.AddWorker(i, candidates[i], kv, prefill: true);
            }

            _decided = new DecidedRouter(simulator._mode);
            _router = new DisaggregatedRouter(_decided, new PrefillPool(_prefillRouter, kv, candidates, _prefill, options.Disaggregation), _counters);
        }

        /// <summary>
        /// The disaggregation decision for a request whose decode worker the decode router chose: its lease (on the decode
        /// and, for a remote prefill, the prefill worker), the engine request (with its deferred import when remote) and
        /// the remote prefill's leg (null when local).
        /// </summary>
        public (WorkerLease Lease, EngineRequest Request, PrefillLeg? Leg) Decide(Request request, WorkerLease decode, EngineRequest engineRequest)
        {
            _decided.Next = decode;
            ValueTask<WorkerLease> routed = _router.RouteAsync(new WorkerRouteRequest { RequestId = request.Id, TokenIds = request.Prompt, Candidates = _simulator._candidates });
            if (!routed.IsCompleted)
            {
                throw new InvalidOperationException($"the disaggregated route of {request.Id} did not complete within its event");
            }

            WorkerLease lease = routed.GetAwaiter().GetResult();
            if (lease is not DisaggregatedLease remote)
            {
                return (lease, engineRequest, null);
            }

            var import = new DeferredKvImport(request.Prompt.Length - 1);
            return (lease, engineRequest with { DeferredKv = import }, new PrefillLeg(request, import, remote.PrefillWorkerId, _simulator._byId[decode.WorkerId]));
        }

        /// <summary>After the decode worker planned a step: the legs whose blocks it reserved ask their prefill worker; those it could not reserve prefill locally.</summary>
        public void StartReserved(Worker decode)
        {
            List<PrefillLeg> legs = decode.Legs;
            int kept = 0;
            for (int i = 0; i < legs.Count; i++)
            {
                PrefillLeg leg = legs[i];
                if (!leg.Import.Reserved.IsCompleted)
                {
                    legs[kept++] = leg;
                }
                else if (leg.Import.Reserved.Result)
                {
                    AskPrefill(leg);
                }
            }

            legs.RemoveRange(kept, legs.Count - kept);
        }

        /// <summary>Sends the prompt less its last token to the prefill worker, to compute and export its KV.</summary>
        private void AskPrefill(PrefillLeg leg)
        {
            Worker prefill = _simulator._byId[leg.PrefillWorkerId];
            leg.Asked = _simulator._clock.Now;
            ChannelReader<EngineOutput> outputs;
            try
            {
                outputs = prefill.Engine.SubmitPolled(new EngineRequest(leg.Request.Id + "-prefill", leg.Request.Prompt[..leg.Import.TokenCount], SamplingParams.Default with { MaxTokens = 1, IgnoreEos = true })
                {
                    ExportKv = true,
                });
            }
            catch (ArgumentException e)
            {
                Fail(leg, e.Message);
                return;
            }

            prefill.Active.Add(new InFlight(leg.Request, null, outputs, keepAnswer: false) { PrefillFor = leg });
            if (!prefill.Busy)
            {
                _simulator.Plan(prefill);
            }
        }

        /// <summary>An output of a remote prefill on its prefill worker: at the last, its KV crosses the link to the decode worker. True when it was the last.</summary>
        public bool PrefillOutput(PrefillLeg leg, EngineOutput output)
        {
            if (output.FinishReason is null)
            {
                return false;
            }

            if (output.Kv is not { } kv)
            {
                Fail(leg, "the prefill worker finished without exporting the KV");
                return true;
            }

            // The mocker's payload carries a token count and no data: it takes the link's time for the KV of those tokens.
            leg.Transfer = _link.TransferTime(kv.Layout.TokenCount);
            leg.Bytes = _link.Bytes(kv.Layout.TokenCount);
            _simulator._clock.After(leg.Transfer, () =>
            {
                leg.Arrived = _simulator._clock.Now;
                leg.Import.Deliver(kv);
                Wake(leg.Decode);
            });
            return true;
        }

        /// <summary>The decode worker's request ended: counts where its prefill ran, as the decode worker reports it to the router.</summary>
        public void Ended(PrefillLeg leg)
        {
            if (!leg.Import.Completed.IsCompleted)
            {
                return;
            }

            KvImportOutcome outcome = leg.Import.Completed.Result;
            if (outcome.Imported)
            {
                _transferMs.Add(leg.Transfer.TotalMilliseconds);
            }

            _counters.Observe(outcome.Imported
                ? new PrefillReport
                {
                    Remote = true,
                    PrefillInstanceId = leg.PrefillWorkerId,
                    PrefillMs = (leg.Arrived - leg.Asked).TotalMilliseconds,
                    TransferMs = leg.Transfer.TotalMilliseconds,
                    TransferBytes = leg.Bytes,
                    TransferTokens = leg.Import.TokenCount,
                }
                : new PrefillReport
                {
                    Remote = false,
                    PrefillInstanceId = leg.PrefillWorkerId,
                    FallbackReason = outcome.Status switch
                    {
                        KvImportStatus.NotReserved => PrefillReasons.NoBlocks,
                        KvImportStatus.Refused => PrefillReasons.ImportRefused,
                        KvImportStatus.Failed => PrefillReasons.PrefillFailed,
                        _ => "cancelled",
                    },
                });
        }

        /// <summary>The split of the run: decisions by reason, remote prefills that did import, fallbacks, transfer times.</summary>
        public SimulationDisaggregation Result() => new()
        {
            Decisions = _counters.Snapshot(),
            RemoteDecisions = _counters.Remote,
            LocalDecisions = _counters.Local,
            RemotePrefills = _counters.RemoteCompleted,
            Fallbacks = _counters.Fallbacks,
            TransferMs = Reports.LatencySummary.Of(_transferMs),
            TransferBytes = _counters.TransferBytes,
            PrefillRequestsPerWorker = Spread.Of(_prefill.Select(w => (double)w.Engine.Stats.RequestsFinished)),
        };

        public async ValueTask DisposeAsync()
        {
            await _prefillRouter.DisposeAsync().ConfigureAwait(false);
            await _router.DisposeAsync().ConfigureAwait(false);
        }

        /// <summary>The KV (or a failure) reached a decode worker: an idle one plans at once, a busy one at the end of its step.</summary>
        private void Wake(Worker decode)
        {
            if (!decode.Busy)
            {
                _simulator.Plan(decode);
            }
        }

        private void Fail(PrefillLeg leg, string reason)
        {
            leg.Import.Fail(reason);
            Wake(leg.Decode);
        }
    }

    /// <summary>One remote prefill, from the decode engine's reservation to the KV's arrival.</summary>
    private sealed class PrefillLeg(Request request, DeferredKvImport import, long prefillWorkerId, Worker decode)
    {
        public Request Request { get; } = request;

        public DeferredKvImport Import { get; } = import;

        public long PrefillWorkerId { get; } = prefillWorkerId;

        public Worker Decode { get; } = decode;

        /// <summary>When the prefill worker was asked.</summary>
        public TimeSpan Asked { get; set; }

        /// <summary>When the KV reached the decode worker.</summary>
        public TimeSpan Arrived { get; set; }

        public TimeSpan Transfer { get; set; }

        public long Bytes { get; set; }
    }

    /// <summary>
    /// The decode side of <see cref="DisaggregatedRouter"/> in the simulation: the decode router already chose (the KV
    /// router's decision may have waited in its queue, on the virtual clock), and this hands that lease over.
    /// </summary>
    private sealed class DecidedRouter(string name) : IWorkerRouter
    {
        public string Name { get; } = name;

        /// <summary>The lease the next route returns.</summary>
        public WorkerLease? Next { get; set; }

        public ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
        {
            WorkerLease lease = Next ?? throw new InvalidOperationException("no decode lease to hand over");
            Next = null;
            return ValueTask.FromResult(lease);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>The prefill workers as the disaggregated router sees them; their queue is their own load reports (the KV router's, in kv mode).</summary>
    private sealed class PrefillPool(IWorkerRouter router, KvRouter? kv, long[] candidates, Worker[] workers, DisaggregationSettings settings) : IPrefillPool
    {
        public string Endpoint => "simulation.prefill.generate";

        public IReadOnlyList<long> Candidates => candidates;

        public IWorkerRouter Router => router;

        public DisaggregationSettings Settings => settings;

        public int QueuedRequests() => kv?.ReportedWaiting(candidates) ?? workers.Sum(w => w.ReportedWaiting);

        public bool AcceptsRemotePrefill(long workerId) => true;
    }
}
