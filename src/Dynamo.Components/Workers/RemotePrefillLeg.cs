using System.Diagnostics;
using System.Text.Json;
using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Workers;

/// <summary>
/// The prefill leg of one request on a decode worker: once the engine reserved the blocks
/// (<see cref="DeferredKvImport.Reserved"/>), asks the chosen prefill worker over the request plane to prefill
/// the prompt (less its last token, which the decode engine computes itself) and push the KV to this worker's
/// transfer port, then delivers the KV to the engine. Anything that goes wrong (the prefill worker gone,
/// failing, silent past the stall timeout, the transfer broken or refused) makes the engine prefill locally:
/// the request completes either way. Cancelling the request cancels the prefill request and the transfer.
/// With <see cref="EngineWorkerOptions.SimulatedLink"/> (benchmarks), a payload without data (the mocker's) waits
/// the link's transfer time before it is delivered, and the link's bytes and time are counted as the transfer's.
/// </summary>
internal sealed partial class RemotePrefillLeg : IAsyncDisposable
{
    private readonly EngineWorker _worker;
    private readonly RemotePrefill _target;
    private readonly DeferredKvImport _import;
    private readonly EngineRequest _request;
    private readonly CancellationTokenSource _cancel;
    private readonly Task<PrefillReport> _run;

    private RemotePrefillLeg(EngineWorker worker, RemotePrefill target, EngineRequest request, DeferredKvImport import, CancellationToken cancellationToken)
    {
        _worker = worker;
        _target = target;
        _request = request;
        _import = import;
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _run = Task.Run(() => TracedRunAsync(_cancel.Token), CancellationToken.None);
    }

    /// <summary>
    /// The engine request with its deferred import, and the leg that fills it (started: it waits for the
    /// engine's reservation, so submit the returned request right away).
    /// </summary>
    public static (EngineRequest Request, RemotePrefillLeg Leg) Start(EngineWorker worker, RemotePrefill target, EngineRequest request, CancellationToken cancellationToken)
    {
        var import = new DeferredKvImport(request.PromptTokens.Count - 1);
        EngineRequest deferred = request with { DeferredKv = import };
        return (deferred, new RemotePrefillLeg(worker, target, deferred, import, cancellationToken));
    }

    /// <summary>Where the prefill ran and what it cost; complete once the leg ended (never faults).</summary>
    public Task<PrefillReport> Report => _run;

    public async ValueTask DisposeAsync()
    {
        await _cancel.CancelAsync().ConfigureAwait(false);
        _import.Fail("the request ended");
        await _run.ConfigureAwait(false);
        _cancel.Dispose();
    }

    /// <summary>
    /// <see cref="RunAsync"/> in a <c>remote_prefill</c> span, under the worker's span (current when the leg started): the
    /// prefill worker's spans are its children.
    /// </summary>
    private async Task<PrefillReport> TracedRunAsync(CancellationToken cancellationToken)
    {
        using Activity? span = DynamoTracing.Worker.StartActivity(DynamoTracing.Spans.RemotePrefill, ActivityKind.Client);
        span?.SetTag(DynamoTracing.Attributes.RequestId, _request.Id);
        span?.SetTag(DynamoTracing.Attributes.PrefillWorkerId, EndpointAddress.FormatId(_target.InstanceId));
        PrefillReport report = await RunAsync(cancellationToken).ConfigureAwait(false);
        if (span is not null)
        {
            span.SetTag(DynamoTracing.Attributes.TransferTokens, report.TransferTokens);
            span.SetTag(DynamoTracing.Attributes.TransferBytes, report.TransferBytes);
            if (!report.Remote && report.FallbackReason != "cancelled")
            {
                span.SetStatus(ActivityStatusCode.Error, $"prefilled locally: {report.FallbackReason}");
            }
        }

        return report;
    }

    private async Task<PrefillReport> RunAsync(CancellationToken cancellationToken)
    {
        string id = _request.Id;
        if (!await _import.Reserved.ConfigureAwait(false))
        {
            KvImportOutcome outcome = await _import.Completed.ConfigureAwait(false);
            return Fallback(outcome.Status == KvImportStatus.Cancelled ? null : PrefillReasons.NoBlocks, outcome.Detail);
        }

        KvTransferServer? server = _worker.Options.KvTransfer;
        if (server is null)
        {
            _import.Fail("this worker has no KV transfer port");
            return await FallbackAfterAsync(PrefillReasons.NoBlocks, "this worker has no KV transfer port").ConfigureAwait(false);
        }

        string transferId = $"{id}-{Guid.NewGuid():N}";
        using KvTransferTicket ticket = server.Expect(transferId);
        var clock = Stopwatch.StartNew();
        PrefillReport? sender = null;
        string? failure = null;
        bool mismatch = false;
        try
        {
            EndpointClient client = await _worker.PrefillClientAsync(_target.Endpoint, cancellationToken).ConfigureAwait(false);
            byte[] payload = JsonSerializer.SerializeToUtf8Bytes(new GenerateRequest
            {
                Version = GenerateRequest.CurrentVersion,
                RequestId = $"{id}-prefill",
                DpRank = _target.DpRank,
                TokenIds = _request.PromptTokens.Take(_import.TokenCount).ToArray(),
                Sampling = new GenerateSampling { MaxTokens = 1, Temperature = 0 },
                KvTransfer = new KvTransferTarget
                {
                    Address = server.Address,
                    TransferId = transferId,
                    DecodeInstanceId = _worker.InstanceId,
                    ModelFingerprint = _worker.Options.ModelFingerprint,
                },
            }, WorkerJsonContext.Default.GenerateRequest);
            sender = await CallAsync(client, payload, ticket, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            _import.Fail("the request ended");
            return await FallbackAfterAsync(null, "the request ended").ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = e.Message;
            mismatch = e is RequestPlaneException { Code: "model_mismatch" };
        }

        KvTransferPayload? kv = ticket.Received.IsCompletedSuccessfully ? ticket.Received.Result : null;
        if (kv is null)
        {
            string why = failure ?? "the prefill worker finished without pushing the KV";
            Log.RemoteFailed(_worker.Logger, id, EndpointAddress.FormatId(_target.InstanceId), EndpointAddress.FormatId(_worker.InstanceId), why);
            _import.Fail(why);
            return await FallbackAfterAsync(mismatch ? PrefillReasons.ModelMismatch : PrefillReasons.PrefillFailed, why).ConfigureAwait(false);
        }

        // A payload without data (the mocker's) crosses the simulated link, if the worker has one, before it is delivered.
        long bytes = kv.Data.Length;
        TimeSpan linkTime = TimeSpan.Zero;
        if (_worker.Options.SimulatedLink is { } link && kv.Data.IsEmpty)
        {
            bytes = link.Bytes(kv.Layout.TokenCount);
            linkTime = link.TransferTime(kv.Layout.TokenCount);
            try
            {
                await Task.Delay(linkTime, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                _import.Fail("the request ended");
                return await FallbackAfterAsync(null, "the request ended").ConfigureAwait(false);
            }
        }

        TimeSpan prefill = clock.Elapsed;
        _import.Deliver(kv);

        // The ticket (and a pooled receive buffer with it) must outlive the import: it is disposed after this.
        KvImportOutcome result = await _import.Completed.ConfigureAwait(false);
        if (!result.Imported)
        {
            if (result.Status == KvImportStatus.Refused)
            {
                Log.ImportRefused(_worker.Logger, id, EndpointAddress.FormatId(_target.InstanceId), EndpointAddress.FormatId(_worker.InstanceId), result.Detail);
            }

            return Fallback(result.Status == KvImportStatus.Refused ? PrefillReasons.ImportRefused : null, result.Detail);
        }

        int blocks = (kv.Layout.TokenCount + _worker.BlockSize - 1) / _worker.BlockSize;
        TimeSpan? transfer = sender?.TransferMs is double ms ? TimeSpan.FromMilliseconds(ms) + linkTime : linkTime > TimeSpan.Zero ? linkTime : null;
        int parts = Math.Max(ticket.PartsReceived, 1);
        _worker.Disaggregation.CountRemote(bytes, kv.Layout.TokenCount, blocks, prefill, transfer, parts);
        Log.Remote(_worker.Logger, id, EndpointAddress.FormatId(_target.InstanceId), kv.Layout.TokenCount, bytes, parts, prefill.TotalMilliseconds, transfer?.TotalMilliseconds ?? double.NaN);
        return new PrefillReport
        {
            Remote = true,
            PrefillInstanceId = _target.InstanceId,
            PrefillMs = prefill.TotalMilliseconds,
            TransferMs = transfer?.TotalMilliseconds,
            TransferBytes = bytes,
            TransferTokens = kv.Layout.TokenCount,
            TransferPartBytes = sender?.TransferPartBytes,
        };
    }

    /// <summary>
    /// Sends the prefill request and reads its stream until it ends or the KV is in (then the rest is read
    /// for the sender's report, still under the stall timeout). Returns the sender's report when it came.
    /// </summary>
    private async Task<PrefillReport?> CallAsync(EndpointClient client, byte[] payload, KvTransferTicket ticket, CancellationToken cancellationToken)
    {
        TimeSpan stall = _worker.Options.RemotePrefillStallTimeout;
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        call.CancelAfter(stall);
        PrefillReport? report = null;
        var options = RequestOptions.Default with { RequestId = $"{_request.Id}-prefill", IdleTimeout = stall };
        try
        {
            await foreach (ReadOnlyMemory<byte> frame in client.StreamAsync(payload, _target.InstanceId, options, call.Token).ConfigureAwait(false))
            {
                call.CancelAfter(stall);
                GenerateResponse? response = JsonSerializer.Deserialize(frame.Span, WorkerJsonContext.Default.GenerateResponse);
                if (response?.Prefill is { } p)
                {
                    report = p;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            if (!ticket.Received.IsCompletedSuccessfully)
            {
                throw new TimeoutException($"the prefill worker sent nothing for {stall.TotalSeconds:0.#} s");
            }
        }
        catch (Exception) when (ticket.Received.IsCompletedSuccessfully)
        {
            // The KV is in: the prefill worker's end does not matter any more.
        }

        return report;
    }

    private PrefillReport Fallback(string? reason, string detail)
    {
        if (reason is not null)
        {
            _worker.Disaggregation.CountFallback(reason);
            Log.Local(_worker.Logger, _request.Id, EndpointAddress.FormatId(_target.InstanceId), reason, detail);
        }

        return new PrefillReport { Remote = false, PrefillInstanceId = _target.InstanceId, FallbackReason = reason ?? "cancelled" };
    }

    private async Task<PrefillReport> FallbackAfterAsync(string? reason, string detail)
    {
        await _import.Completed.ConfigureAwait(false);
        return Fallback(reason, detail);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4011, Level = LogLevel.Information, Message = "Request {RequestId}: prefilled on worker {PrefillWorker}: {Tokens} tokens of KV, {Bytes} bytes in {Parts} parts, prefill {PrefillMs:F1} ms, transfer {TransferMs:F1} ms")]
        public static partial void Remote(ILogger logger, string requestId, string prefillWorker, int tokens, long bytes, int parts, double prefillMs, double transferMs);

        [LoggerMessage(EventId = 4012, Level = LogLevel.Information, Message = "Request {RequestId}: prefilled locally instead of on worker {PrefillWorker} ({Reason}: {Detail})")]
        public static partial void Local(ILogger logger, string requestId, string prefillWorker, string reason, string detail);

        [LoggerMessage(EventId = 4013, Level = LogLevel.Warning, Message = "Request {RequestId}: the remote prefill on worker {PrefillWorker} for decode worker {DecodeWorker} failed: {Reason}; prefilling locally")]
        public static partial void RemoteFailed(ILogger logger, string requestId, string prefillWorker, string decodeWorker, string reason);

        [LoggerMessage(EventId = 4014, Level = LogLevel.Warning, Message = "Request {RequestId}: the KV from prefill worker {PrefillWorker} cannot be imported by decode worker {DecodeWorker} (another model or layout?): {Reason}; prefilling locally")]
        public static partial void ImportRefused(ILogger logger, string requestId, string prefillWorker, string decodeWorker, string reason);
    }
}
