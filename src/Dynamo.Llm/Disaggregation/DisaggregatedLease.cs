using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;

namespace Dynamo.Llm.Disaggregation;

/// <summary>
/// A lease on a decode worker and on the prefill worker that prefills for it: the request goes to the decode
/// worker with <see cref="GenerateRequest.RemotePrefill"/> naming the prefill worker. The prefill charge ends
/// at the first token; the decode charge as any lease's.
/// </summary>
public sealed class DisaggregatedLease : WorkerLease
{
    private readonly WorkerLease _decode;
    private readonly WorkerLease _prefill;
    private readonly string _prefillEndpoint;

    /// <summary>A lease on <paramref name="decode"/>'s worker, prefilled by <paramref name="prefill"/>'s worker of <paramref name="prefillEndpoint"/>.</summary>
    public DisaggregatedLease(WorkerLease decode, WorkerLease prefill, string prefillEndpoint)
        : base(decode.WorkerId, decode.DpRank)
    {
        _decode = decode;
        _prefill = prefill;
        _prefillEndpoint = prefillEndpoint;
    }

    /// <summary>The prefill worker's instance id.</summary>
    public long PrefillWorkerId => _prefill.WorkerId;

    /// <inheritdoc/>
    public override int PredictedCachedTokens => _decode.PredictedCachedTokens;

    /// <inheritdoc/>
    public override GenerateRequest Prepare(GenerateRequest request) =>
        _decode.Prepare(request) with { RemotePrefill = new RemotePrefill { Endpoint = _prefillEndpoint, InstanceId = _prefill.WorkerId, DpRank = _prefill.DpRank } };

    /// <inheritdoc/>
    public override void MarkFirstToken()
    {
        _decode.MarkFirstToken();
        _prefill.Complete();
    }

    /// <inheritdoc/>
    public override void Complete(int? actualCachedTokens = null, int? outputTokens = null)
    {
        _decode.Complete(actualCachedTokens, outputTokens);
        _prefill.Complete();
    }

    /// <inheritdoc/>
    public override async ValueTask DisposeAsync()
    {
        await _prefill.DisposeAsync().ConfigureAwait(false);
        await _decode.DisposeAsync().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }
}
