namespace Dynamo.Llm.Parallel;

/// <summary>
/// A collective could not complete: a rank of the group is gone, stalled past the timeout, or sent something this
/// rank did not expect. <see cref="Rank"/> names the rank that failed when it is known.
/// </summary>
public sealed class CollectiveException : Exception
{
    public CollectiveException(string message, int? rank = null, Exception? inner = null)
        : base(message, inner) => Rank = rank;

    public CollectiveException()
    {
    }

    public CollectiveException(string message)
        : base(message)
    {
    }

    public CollectiveException(string message, Exception inner)
        : base(message, inner)
    {
    }

    /// <summary>The rank that failed, when known.</summary>
    public int? Rank { get; }
}
