using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Disaggregation;

/// <summary>
/// The disaggregated route: the decode worker by the endpoint's policy, the rule on its predicted hit, the prefill
/// worker by the pool's router; both leases charged and released, the decode worker told where to prefill.
/// </summary>
public sealed class DisaggregatedRouterTests
{
    private static readonly DisaggregationSettings Rule = new() { MaxLocalPrefillLength = 10, MaxPrefillQueueSize = 4 };

    [Fact]
    public async Task RouteAsync_LongPrompt_LeasesBothAndTellsTheDecodeWorkerWhereToPrefill()
    {
        var decode = new FakeRouter(predictedCached: 0);
        var prefill = new FakeRouter(predictedCached: 0);
        var counters = new DisaggregationCounters();
        var router = new DisaggregatedRouter(decode, new FakePool(prefill, [21, 22], Rule), counters);

        await using WorkerLease lease = await router.RouteAsync(Request(40, candidates: [7, 8]));

        Assert.Equal(7, lease.WorkerId);
        Assert.Equal([21L, 22L], prefill.LastRequest!.Candidates);
        Assert.Equal([7L, 8L], decode.LastRequest!.Candidates);
        GenerateRequest sent = lease.Prepare(new GenerateRequest { Version = 1, TokenIds = [1, 2, 3] });
        Assert.Equal(new RemotePrefill { Endpoint = "dynamo.prefill.generate", InstanceId = 21 }, sent.RemotePrefill);
        Assert.Equal([1, 2, 3], sent.TokenIds);
        Assert.Equal(1, counters.Remote);
        Assert.Equal([(true, PrefillReasons.LongPrompt, 1L)], counters.Snapshot());

        // The prefill charge ends at the first token, the decode charge when the stream completes.
        Assert.Equal(0, prefill.Leases[0].Completions);
        lease.MarkFirstToken();
        Assert.Equal(1, decode.Leases[0].FirstTokens);
        Assert.True(prefill.Leases[0].Completions > 0);
        Assert.Equal(0, decode.Leases[0].Completions);
        lease.Complete(12);
        Assert.Equal(12, decode.Leases[0].LastCached);
    }

    [Fact]
    public async Task RouteAsync_ShortUncachedPart_OnlyTheDecodeLeaseAndNoAnnotation()
    {
        var decode = new FakeRouter(predictedCached: 32);
        var prefill = new FakeRouter(predictedCached: 0);
        var counters = new DisaggregationCounters();
        var router = new DisaggregatedRouter(decode, new FakePool(prefill, [21], Rule), counters);

        await using WorkerLease lease = await router.RouteAsync(Request(40, candidates: [7]));

        Assert.Same(decode.Leases[0], lease);
        Assert.Empty(prefill.Leases);
        Assert.Null(lease.Prepare(new GenerateRequest { Version = 1, TokenIds = [1] }).RemotePrefill);
        Assert.Equal([(false, PrefillReasons.ShortPrompt, 1L)], counters.Snapshot());
    }

    [Fact]
    public async Task RouteAsync_PrefillQueueFullOrRouterRefusesOrDecodeOptsOut_LocalWithTheReasonCounted()
    {
        var counters = new DisaggregationCounters();
        var decode = new FakeRouter(predictedCached: 0);
        await using (WorkerLease full = await new DisaggregatedRouter(decode, new FakePool(new FakeRouter(0), [21], Rule) { Queued = 4 }, counters).RouteAsync(Request(40, [7])))
        {
            Assert.Null(full.Prepare(new GenerateRequest()).RemotePrefill);
        }

        var refusing = new FakeRouter(0) { Refuse = true };
        await using (WorkerLease refused = await new DisaggregatedRouter(decode, new FakePool(refusing, [21], Rule), counters).RouteAsync(Request(40, [7])))
        {
            Assert.Null(refused.Prepare(new GenerateRequest()).RemotePrefill);
        }

        await using (WorkerLease optedOut = await new DisaggregatedRouter(decode, new FakePool(new FakeRouter(0), [21], Rule) { DecodeTakes = false }, counters).RouteAsync(Request(40, [7])))
        {
            Assert.Null(optedOut.Prepare(new GenerateRequest()).RemotePrefill);
        }

        await using (WorkerLease none = await new DisaggregatedRouter(decode, new FakePool(new FakeRouter(0), [], Rule), counters).RouteAsync(Request(40, [7])))
        {
            Assert.Null(none.Prepare(new GenerateRequest()).RemotePrefill);
        }

        Assert.Equal(
            [(false, PrefillReasons.DecodeOptedOut, 1L), (false, PrefillReasons.QueueFull, 1L), (false, PrefillReasons.PrefillRejected, 2L)],
            counters.Snapshot());
        Assert.All(decode.Leases, l => Assert.True(l.Completions > 0));
    }

    [Fact]
    public async Task Dispose_WithoutFirstToken_ReleasesBothCharges()
    {
        var decode = new FakeRouter(0);
        var prefill = new FakeRouter(0);
        WorkerLease lease = await new DisaggregatedRouter(decode, new FakePool(prefill, [21], Rule), new DisaggregationCounters()).RouteAsync(Request(40, [7]));
        await lease.DisposeAsync();
        Assert.True(decode.Leases[0].Completions > 0);
        Assert.True(prefill.Leases[0].Completions > 0);
    }

    [Fact]
    public async Task RouteAsync_DecodeRouterRefuses_TheRejectionPassesThroughAndNothingIsCharged()
    {
        var prefill = new FakeRouter(0);
        var router = new DisaggregatedRouter(new FakeRouter(0) { Refuse = true }, new FakePool(prefill, [21], Rule), new DisaggregationCounters());
        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(() => router.RouteAsync(Request(40, [7])).AsTask());
        Assert.Equal(RouterRejection.QueueFull, e.Reason);
        Assert.Empty(prefill.Leases);
    }

    private static WorkerRouteRequest Request(int tokens, IReadOnlyList<long> candidates) => new()
    {
        RequestId = "r",
        TokenIds = [.. Enumerable.Range(1, tokens)],
        Candidates = candidates,
    };

    private sealed class FakeRouter(int predictedCached) : IWorkerRouter
    {
        public List<RecordingLease> Leases { get; } = [];

        public WorkerRouteRequest? LastRequest { get; private set; }

        public bool Refuse { get; init; }

        public string Name => "fake";

        public ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
        {
            LastRequest = request;
            if (Refuse)
            {
                return ValueTask.FromException<WorkerLease>(new RouterRejectedException(RouterRejection.QueueFull, "full", TimeSpan.FromSeconds(1)));
            }

            var lease = new RecordingLease(request.Candidates[0], predictedCached);
            Leases.Add(lease);
            return ValueTask.FromResult<WorkerLease>(lease);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private sealed class RecordingLease(long workerId, int predictedCached) : WorkerLease(workerId)
    {
        public int FirstTokens { get; private set; }

        public int Completions { get; private set; }

        public int? LastCached { get; private set; }

        public override int PredictedCachedTokens => predictedCached;

        public override void MarkFirstToken() => FirstTokens++;

        public override void Complete(int? actualCachedTokens = null, int? outputTokens = null)
        {
            Completions++;
            LastCached = actualCachedTokens ?? LastCached;
        }
    }

    private sealed class FakePool(IWorkerRouter router, IReadOnlyList<long> candidates, DisaggregationSettings settings) : IPrefillPool
    {
        public int Queued { get; init; }

        public bool DecodeTakes { get; init; } = true;

        public string Endpoint => "dynamo.prefill.generate";

        public IReadOnlyList<long> Candidates => candidates;

        public IWorkerRouter Router => router;

        public DisaggregationSettings Settings => settings;

        public int QueuedRequests() => Queued;

        public bool AcceptsRemotePrefill(long workerId) => DecodeTakes;
    }
}
