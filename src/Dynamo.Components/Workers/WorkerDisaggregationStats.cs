using System.Collections.Concurrent;

namespace Dynamo.Components.Workers;

/// <summary>
/// A worker's disaggregation counters (thread-safe): as a decode worker, its remote prefills and its local
/// fallbacks by reason, the KV received and the time it took; as a prefill worker, the prefills it served
/// for others and the KV it pushed.
/// </summary>
public sealed class WorkerDisaggregationStats
{
    private readonly ConcurrentDictionary<string, long> _fallbacks = new(StringComparer.Ordinal);
    private long _remote;
    private long _bytesReceived;
    private long _partsReceived;
    private long _partsSent;
    private long _tokensReceived;
    private long _blocksReceived;
    private long _transferTicks;
    private long _prefillTicks;
    private long _served;
    private long _bytesSent;
    private long _sendFailures;
    private long _sendTicks;

    /// <summary>Requests whose KV came from a prefill worker.</summary>
    public long RemotePrefills => Interlocked.Read(ref _remote);

    /// <summary>Bytes of KV received from prefill workers.</summary>
    public long TransferBytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>Parts the KV received came in (one per transfer from a whole sender, one per rank from a tensor-parallel one).</summary>
    public long TransferPartsReceived => Interlocked.Read(ref _partsReceived);

    /// <summary>Parts this worker pushed (one per transfer, or one per rank of a tensor-parallel worker).</summary>
    public long TransferPartsSent => Interlocked.Read(ref _partsSent);

    /// <summary>Prompt tokens whose KV was received.</summary>
    public long TransferTokensReceived => Interlocked.Read(ref _tokensReceived);

    /// <summary>KV blocks (of this worker's block size) filled from transfers.</summary>
    public long TransferBlocksReceived => Interlocked.Read(ref _blocksReceived);

    /// <summary>Seconds the transfers took, as the prefill workers measured their sends.</summary>
    public double TransferSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _transferTicks)).TotalSeconds;

    /// <summary>Seconds from asking a prefill worker to the KV's arrival, summed over remote prefills.</summary>
    public double RemotePrefillSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _prefillTicks)).TotalSeconds;

    /// <summary>Requests asked to prefill remotely that prefilled locally, by reason.</summary>
    public IReadOnlyList<(string Reason, long Count)> LocalFallbacks => [.. _fallbacks.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value))];

    /// <summary>Prefills this worker ran for decode workers.</summary>
    public long PrefillsServed => Interlocked.Read(ref _served);

    /// <summary>Bytes of KV this worker pushed to decode workers.</summary>
    public long TransferBytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Pushes of KV that failed.</summary>
    public long TransferSendFailures => Interlocked.Read(ref _sendFailures);

    /// <summary>Seconds this worker's pushes took.</summary>
    public double TransferSendSeconds => TimeSpan.FromTicks(Interlocked.Read(ref _sendTicks)).TotalSeconds;

    internal void CountRemote(long bytes, int tokens, int blocks, TimeSpan prefill, TimeSpan? transfer, int parts = 1)
    {
        Interlocked.Increment(ref _remote);
        Interlocked.Add(ref _partsReceived, parts);
        Interlocked.Add(ref _bytesReceived, bytes);
        Interlocked.Add(ref _tokensReceived, tokens);
        Interlocked.Add(ref _blocksReceived, blocks);
        Interlocked.Add(ref _prefillTicks, prefill.Ticks);
        Interlocked.Add(ref _transferTicks, (transfer ?? TimeSpan.Zero).Ticks);
    }

    internal void CountFallback(string reason) => _fallbacks.AddOrUpdate(reason, 1, static (_, n) => n + 1);

    internal void CountServed(long bytes, TimeSpan elapsed, int parts)
    {
        Interlocked.Add(ref _partsSent, parts);
        Interlocked.Increment(ref _served);
        Interlocked.Add(ref _bytesSent, bytes);
        Interlocked.Add(ref _sendTicks, elapsed.Ticks);
    }

    internal void CountSendFailure() => Interlocked.Increment(ref _sendFailures);
}
