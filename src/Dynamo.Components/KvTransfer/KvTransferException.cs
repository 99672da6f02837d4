namespace Dynamo.Components.KvTransfer;

/// <summary>
/// A KV transfer failed; <see cref="Error"/> says how. The message names the transfer id, the other end's
/// address and the reason. Cancellation by the caller is an <see cref="OperationCanceledException"/> instead.
/// </summary>
public sealed class KvTransferException : Exception
{
    /// <summary>A <see cref="KvTransferError.Broken"/> transfer.</summary>
    public KvTransferException()
        : this(KvTransferError.Broken, "the KV transfer failed")
    {
    }

    /// <summary>A <see cref="KvTransferError.Broken"/> transfer.</summary>
    public KvTransferException(string message)
        : this(KvTransferError.Broken, message)
    {
    }

    /// <summary>A <see cref="KvTransferError.Broken"/> transfer.</summary>
    public KvTransferException(string message, Exception innerException)
        : this(KvTransferError.Broken, message, innerException)
    {
    }

    /// <summary>A failure of kind <paramref name="error"/>.</summary>
    public KvTransferException(KvTransferError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    /// <summary>How the transfer failed.</summary>
    public KvTransferError Error { get; }
}
