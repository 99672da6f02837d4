using Dynamo.Frontend;
using Dynamo.Frontend.Admission;
using Dynamo.Frontend.Observability;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Frontend.Admission;

/// <summary>The admission queue's rules on a clock the test moves: order by priority then arrival, displacement, limits, timeouts, cancellation.</summary>
public sealed class AdmissionControllerTests
{
    private readonly ManualTimeProvider _time = new();
    private readonly FrontendMetrics _metrics = new();

    private AdmissionController Create(AdmissionOptions options) => new(options.Validate(), _metrics, _time);

    private double AdmissionGauge(string model = "m") => _metrics.Queued.WithLabels(model, FrontendMetrics.AdmissionStage).Value;

    [Fact]
    public async Task EnterAsync_SlotsTaken_WaitersAdmittedByPriorityThenArrival()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1 });
        AdmissionSlot first = await admission.EnterAsync("c", "m", 0, CancellationToken.None);
        var waiting = new List<(string Name, Task<AdmissionSlot> Slot)>();
        foreach ((string name, int priority) in new[] { ("a", 5), ("b", 0), ("c", 5), ("d", -3), ("e", 0) })
        {
            waiting.Add((name, admission.EnterAsync(name, "m", priority, CancellationToken.None).AsTask()));
        }

        Assert.Equal(5, admission.Queued);
        Assert.Equal(5, AdmissionGauge());
        var order = new List<string>();
        AdmissionSlot current = first;
        for (int i = 0; i < waiting.Count; i++)
        {
            Assert.DoesNotContain(waiting, w => w.Slot.IsCompleted && !order.Contains(w.Name));
            current.Dispose();
            (string name, Task<AdmissionSlot> slot) = Assert.Single(waiting, w => w.Slot.IsCompletedSuccessfully && !order.Contains(w.Name));
            order.Add(name);
            current = await slot;
            Assert.Equal(1, admission.Running);
        }

        Assert.Equal(["d", "b", "e", "a", "c"], order);
        current.Dispose();
        Assert.Equal(0, admission.Running);
        Assert.Equal(0, AdmissionGauge());
    }

    [Fact]
    public async Task EnterAsync_QueueFull_LowestPriorityRefusedOrDisplaced()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxQueuedRequests = 2 });
        using AdmissionSlot running = await admission.EnterAsync("c", "m", 0, CancellationToken.None);
        Task<AdmissionSlot> a = admission.EnterAsync("a", "m", 5, CancellationToken.None).AsTask();
        Task<AdmissionSlot> b = admission.EnterAsync("b", "m", 5, CancellationToken.None).AsTask();

        Task<AdmissionSlot> c = admission.EnterAsync("c", "m", 0, CancellationToken.None).AsTask();
        OpenAiException displaced = await Assert.ThrowsAsync<OpenAiException>(() => b);
        OpenAiException equal = await Assert.ThrowsAsync<OpenAiException>(async () => await admission.EnterAsync("d", "m", 5, CancellationToken.None));
        Task<AdmissionSlot> e = admission.EnterAsync("e", "m", 4, CancellationToken.None).AsTask();
        OpenAiException second = await Assert.ThrowsAsync<OpenAiException>(() => a);

        foreach (OpenAiException refused in new[] { displaced, equal, second })
        {
            Assert.Equal(503, refused.StatusCode);
            Assert.Equal(OverloadErrors.QueueFull, refused.Code);
            Assert.Equal(1, refused.RetryAfterSeconds);
        }

        Assert.Contains("displaced", displaced.Message, StringComparison.Ordinal);
        Assert.Contains("--max-queued-requests", equal.Message, StringComparison.Ordinal);
        Assert.False(c.IsCompleted);
        Assert.False(e.IsCompleted);
        Assert.Equal(2, admission.Queued);
        Assert.Equal(2, AdmissionGauge());
    }

    [Fact]
    public async Task EnterAsync_NoQueue_RefusedAtOnceWhenEverySlotIsTaken()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 2, MaxQueuedRequests = 0 });
        using AdmissionSlot one = await admission.EnterAsync("a", "m", 0, CancellationToken.None);
        using AdmissionSlot two = await admission.EnterAsync("b", "m", 0, CancellationToken.None);

        OpenAiException e = await Assert.ThrowsAsync<OpenAiException>(async () => await admission.EnterAsync("c", "m", -100, CancellationToken.None));

        Assert.Equal(OverloadErrors.QueueFull, e.Code);
    }

    [Fact]
    public async Task EnterAsync_WaitsPastTheQueueTimeout_RefusedWithQueueTimeout()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, QueueTimeout = TimeSpan.FromSeconds(2) });
        AdmissionSlot running = await admission.EnterAsync("a", "m", 0, CancellationToken.None);
        Task<AdmissionSlot> waiting = admission.EnterAsync("b", "m", 0, CancellationToken.None).AsTask();
        Task<AdmissionSlot> later = admission.EnterAsync("c", "m", 0, CancellationToken.None).AsTask();

        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.False(waiting.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(0.1));

        OpenAiException e = await Assert.ThrowsAsync<OpenAiException>(() => waiting);
        Assert.Equal((503, OverloadErrors.QueueTimeout, 1), (e.StatusCode, e.Code, e.RetryAfterSeconds));
        Assert.Contains("--queue-timeout", e.Message, StringComparison.Ordinal);
        Assert.True(later.IsFaulted);
        Assert.Equal(0, admission.Queued);
        Assert.Equal(0, AdmissionGauge());
        running.Dispose();
        using AdmissionSlot next = await admission.EnterAsync("d", "m", 0, CancellationToken.None);
        Assert.Equal(1, admission.Running);
    }

    [Fact]
    public async Task EnterAsync_AdmittedBeforeTheQueueTimeout_TimeoutNeverFires()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, QueueTimeout = TimeSpan.FromSeconds(2) });
        AdmissionSlot running = await admission.EnterAsync("a", "m", 0, CancellationToken.None);
        Task<AdmissionSlot> waiting = admission.EnterAsync("b", "m", 0, CancellationToken.None).AsTask();
        _time.Advance(TimeSpan.FromSeconds(1));

        running.Dispose();
        using AdmissionSlot admitted = await waiting;
        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(1, admission.Running);
        Assert.Equal(0, admission.Queued);
    }

    [Fact]
    public async Task EnterAsync_CancelledWhileWaiting_LeavesTheQueueAndItsCounts()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxInflightPerClient = 1 });
        AdmissionSlot running = await admission.EnterAsync("a", "m", 0, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        Task<AdmissionSlot> waiting = admission.EnterAsync("b", "m", 0, cancel.Token).AsTask();

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.Equal(0, admission.Queued);
        Assert.Equal(0, AdmissionGauge());
        running.Dispose();
        using AdmissionSlot again = await admission.EnterAsync("b", "m", 0, CancellationToken.None);
    }

    [Fact]
    public async Task EnterAsync_PerClientAndPerModelLimits_429UntilOneLeaves()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxInflightPerClient = 2, MaxInflightPerModel = 3 });
        AdmissionSlot one = await admission.EnterAsync("key:a", "m", 0, CancellationToken.None);
        Task<AdmissionSlot> queued = admission.EnterAsync("key:a", "m", 0, CancellationToken.None).AsTask();

        OpenAiException client = await Assert.ThrowsAsync<OpenAiException>(async () => await admission.EnterAsync("key:a", "m", 0, CancellationToken.None));
        Task<AdmissionSlot> other = admission.EnterAsync("key:b", "m", 0, CancellationToken.None).AsTask();
        OpenAiException model = await Assert.ThrowsAsync<OpenAiException>(async () => await admission.EnterAsync("key:c", "m", 0, CancellationToken.None));
        Task<AdmissionSlot> otherModel = admission.EnterAsync("key:c", "n", 0, CancellationToken.None).AsTask();

        Assert.Equal((429, "rate_limit_error", OverloadErrors.ClientLimit, 1), (client.StatusCode, client.Type, client.Code, client.RetryAfterSeconds));
        Assert.Equal((429, "rate_limit_error", OverloadErrors.ModelLimit, 1), (model.StatusCode, model.Type, model.Code, model.RetryAfterSeconds));
        Assert.Contains("--max-inflight-per-client", client.Message, StringComparison.Ordinal);
        Assert.Contains("'m'", model.Message, StringComparison.Ordinal);
        one.Dispose();
        (await queued).Dispose();
        (await other).Dispose();
        (await otherModel).Dispose();
        Assert.Equal(0, admission.Running);
        using AdmissionSlot back = await admission.EnterAsync("key:a", "m", 0, CancellationToken.None);
        Assert.Equal(1, admission.Running);
    }
}
