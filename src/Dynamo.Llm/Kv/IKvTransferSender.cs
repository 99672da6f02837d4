namespace Dynamo.Llm.Kv;

/// <summary>
/// Pushes a KV transfer payload (or one part of it) to a decode worker's transfer address: the network half that an
/// engine's tensor-parallel ranks use to send their own heads (the KV transfer client implements it). Safe to share.
/// </summary>
public interface IKvTransferSender
{
    /// <summary>
    /// Sends <paramref name="payload"/> as transfer <paramref name="transferId"/> to <paramref name="address"/> and
    /// returns once the receiver acknowledged it, with how long that took; throws, with the reason in the message,
    /// when the receiver refuses it, cannot be reached or the connection fails.
    /// </summary>
    Task<TimeSpan> PushAsync(string address, string transferId, KvTransferPayload payload, CancellationToken cancellationToken = default);
}
