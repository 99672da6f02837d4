namespace Dynamo.Components.KvTransfer;

/// <summary>
/// What <see cref="KvTransferClient.SendAsync"/> measured: the payload's data bytes, and the time from the start
/// of the connection to the receiver's acknowledgement (which it sends once the whole payload is in).
/// </summary>
public readonly record struct KvTransferSendResult(long Bytes, TimeSpan Elapsed);
