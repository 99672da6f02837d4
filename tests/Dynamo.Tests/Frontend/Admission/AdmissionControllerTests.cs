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

    /// <summary>A request of <paramref name="client"/> for model "m" (or <paramref name="model"/>).</summary>
    private static Task<AdmissionSlot> Enter(AdmissionController admission, string client, int priority = 0, string model = "m", CancellationToken cancellationToken = default) =>
        admission.EnterAsync(client, model, priority, cancellationToken).AsTask();

    /// <summary>The queue holds <paramref name="count"/> requests, and the admission gauge of model "m" says so.</summary>
    private void AssertWaiting(AdmissionController admission, int count)
    {
        Assert.Equal(count, admission.Queued);
        Assert.Equal(count, _metrics.Queued.WithLabels("m", FrontendMetrics.AdmissionStage).Value);
    }

    [Fact]
    public async Task EnterAsync_SlotsTaken_WaitersAdmittedByPriorityThenArrival()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1 });
        AdmissionSlot first = await Enter(admission, "c");
        var waiting = new List<(string Name, Task<AdmissionSlot> Slot)>();
        foreach ((string name, int priority) in new[] { ("a", 5), ("b", 0), ("c", 5), ("d", -3), ("e", 0) })
        {
            waiting.Add((name, Enter(admission, name, priority)));
        }

        AssertWaiting(admission, 5);
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
        AssertWaiting(admission, 0);
    }

    [Fact]
    public async Task EnterAsync_QueueFull_LowestPriorityRefusedOrDisplaced()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxQueuedRequests = 2 });
        using AdmissionSlot running = await Enter(admission, "c");
        Task<AdmissionSlot> a = Enter(admission, "a", 5);
        Task<AdmissionSlot> b = Enter(admission, "b", 5);

        Task<AdmissionSlot> c = Enter(admission, "c");
        OpenAiException displaced = await Assert.ThrowsAsync<OpenAiException>(() => b);
        OpenAiException equal = await Assert.ThrowsAsync<OpenAiException>(async () => await Enter(admission, "d", 5));
        Task<AdmissionSlot> e = Enter(admission, "e", 4);
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
        AssertWaiting(admission, 2);
    }

    [Fact]
    public async Task EnterAsync_NoQueue_RefusedAtOnceWhenEverySlotIsTaken()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 2, MaxQueuedRequests = 0 });
        using AdmissionSlot one = await Enter(admission, "a");
        using AdmissionSlot two = await Enter(admission, "b");

        OpenAiException e = await Assert.ThrowsAsync<OpenAiException>(async () => await Enter(admission, "c", -100));

        Assert.Equal(OverloadErrors.QueueFull, e.Code);
    }

    [Fact]
    public async Task EnterAsync_WaitsPastTheQueueTimeout_RefusedWithQueueTimeout()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, QueueTimeout = TimeSpan.FromSeconds(2) });
        AdmissionSlot running = await Enter(admission, "a");
        Task<AdmissionSlot> waiting = Enter(admission, "b");
        Task<AdmissionSlot> later = Enter(admission, "c");

        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.False(waiting.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(0.1));

        OpenAiException e = await Assert.ThrowsAsync<OpenAiException>(() => waiting);
        Assert.Equal((503, OverloadErrors.QueueTimeout, 1), (e.StatusCode, e.Code, e.RetryAfterSeconds));
        Assert.Contains("--queue-timeout", e.Message, StringComparison.Ordinal);
        Assert.True(later.IsFaulted);
        AssertWaiting(admission, 0);
        running.Dispose();
        using AdmissionSlot next = await Enter(admission, "d");
        Assert.Equal(1, admission.Running);
    }

    [Fact]
    public async Task EnterAsync_AdmittedBeforeTheQueueTimeout_TimeoutNeverFires()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, QueueTimeout = TimeSpan.FromSeconds(2) });
        AdmissionSlot running = await Enter(admission, "a");
        Task<AdmissionSlot> waiting = Enter(admission, "b");
        _time.Advance(TimeSpan.FromSeconds(1));

        running.Dispose();
        using AdmissionSlot admitted = await waiting;
        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(1, admission.Running);
        AssertWaiting(admission, 0);
    }

    [Fact]
    public async Task EnterAsync_CancelledWhileWaiting_LeavesTheQueueAndItsCounts()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxInflightPerClient = 1 });
        AdmissionSlot running = await Enter(admission, "a");
        using var cancel = new CancellationTokenSource();
        Task<AdmissionSlot> waiting = Enter(admission, "b", cancellationToken: cancel.Token);

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        AssertWaiting(admission, 0);
        running.Dispose();
        using AdmissionSlot again = await Enter(admission, "b");
    }

    [Fact]
    public async Task EnterAsync_PerClientAndPerModelLimits_429UntilOneLeaves()
    {
        AdmissionController admission = Create(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxInflightPerClient = 2, MaxInflightPerModel = 3 });
        AdmissionSlot one = await Enter(admission, "key:a");
        Task<AdmissionSlot> queued = Enter(admission, "key:a");

        OpenAiException client = await Assert.ThrowsAsync<OpenAiException>(async () => await Enter(admission, "key:a"));
        Task<AdmissionSlot> other = Enter(admission, "key:b");
        OpenAiException model = await Assert.ThrowsAsync<OpenAiException>(async () => await Enter(admission, "key:c"));
        Task<AdmissionSlot> otherModel = Enter(admission, "key:c", model: "n");

        Assert.Equal((429, "rate_limit_error", OverloadErrors.ClientLimit, 1), (client.StatusCode, client.Type, client.Code, client.RetryAfterSeconds));
        Assert.Equal((429, "rate_limit_error", OverloadErrors.ModelLimit, 1), (model.StatusCode, model.Type, model.Code, model.RetryAfterSeconds));
        Assert.Contains("--max-inflight-per-client", client.Message, StringComparison.Ordinal);
        Assert.Contains("'m'", model.Message, StringComparison.Ordinal);
        one.Dispose();
        (await queued).Dispose();
        (await other).Dispose();
        (await otherModel).Dispose();
        Assert.Equal(0, admission.Running);
        using AdmissionSlot back = await Enter(admission, "key:a");
        Assert.Equal(1, admission.Running);
    }
}
