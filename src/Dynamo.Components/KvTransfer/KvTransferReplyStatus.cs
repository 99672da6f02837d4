namespace Dynamo.Components.KvTransfer;

/// <summary>The status byte of the receiver's one reply on a connection (wire values: README.md in this folder).</summary>
internal enum KvTransferReplyStatus : byte
{
    /// <summary>The whole payload (or this part of it) is in and handed to the ticket: this connection's transfer is done.</summary>
    Received = 1,

    /// <summary>
    /// The transfer is refused (before its data: unknown id, bad header) or given up (its ticket ended, the data
    /// stalled, the receiver is stopping); the message says why. The receiver reads no more of it.
    /// </summary>
    Refused = 2,
}
