namespace Dynamo.Components.KvTransfer;

/// <summary>Why a KV transfer did not happen (<see cref="KvTransferException.Error"/>); callers branch on it, never on the message.</summary>
public enum KvTransferError
{
    /// <summary>The receiver refused the transfer (unknown, expired or cancelled id; a layout that disagrees with the data length); the message carries its reason.</summary>
    Refused = 1,

    /// <summary>No connection to the receiver: refused, unreachable, or not made within the connect timeout.</summary>
    Unreachable = 2,

    /// <summary>The connection broke (closed or reset) after the transfer started.</summary>
    Broken = 3,

    /// <summary>The other end spoke something that is not this protocol (wrong magic, a malformed reply).</summary>
    Protocol = 4,

    /// <summary>No progress within the idle timeout (a sender or receiver that stopped), or a ticket that expired before its payload arrived.</summary>
    TimedOut = 5,
}
