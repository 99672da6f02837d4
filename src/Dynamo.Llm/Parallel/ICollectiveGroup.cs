namespace Dynamo.Llm.Parallel;

/// <summary>
/// The ranks of one tensor-parallel worker and the collectives their forward pass needs. Every rank calls the same
/// operations in the same order with the same lengths (the engine's step plan decides them, and rank 0 broadcasts the
/// plan); an operation returns when this rank's part is done. Results are bitwise identical on every rank and do not
/// depend on timing: a sum is taken in rank order 0, 1, ..., Size - 1. A rank that is gone, or stalls past the
/// group's timeout, makes every operation on the others throw <see cref="CollectiveException"/> naming it; after that
/// the group is broken and every later call throws too.
/// </summary>
public interface ICollectiveGroup : IDisposable
{
    /// <summary>This process's rank, 0 .. <see cref="Size"/> - 1. Rank 0 runs the scheduler.</summary>
    int Rank { get; }

    /// <summary>How many ranks the group has (the tensor-parallel size).</summary>
    int Size { get; }

    /// <summary>Replaces <paramref name="values"/> on every rank by the element-wise sum over ranks, in rank order.</summary>
    void AllReduceSum(Span<float> values);

    /// <summary>
    /// Every rank's <paramref name="local"/> (one length on all ranks) concatenated in rank order into
    /// <paramref name="gathered"/> (Size x local.Length) on <paramref name="root"/>; other ranks pass an empty
    /// <paramref name="gathered"/>.
    /// </summary>
    void Gather(ReadOnlySpan<float> local, Span<float> gathered, int root = 0);

    /// <summary>
    /// Sends <paramref name="message"/> from <paramref name="root"/> to every rank and returns it: on the root its own
    /// bytes; on the others what the root sent (any length, including empty; the argument is ignored there).
    /// </summary>
    ReadOnlyMemory<byte> Broadcast(ReadOnlyMemory<byte> message, int root = 0);

    /// <summary>
    /// Point to point (pipeline parallelism): sends <paramref name="values"/> to rank <paramref name="destination"/>,
    /// which takes them with one <see cref="Receive"/> of the same length; messages between two ranks arrive in the order
    /// sent. Returns once the values are handed to the transport (it may wait for the receiver to take an earlier one).
    /// Unlike the collectives, Send and Receive involve only the two ranks, and one thread may send while another
    /// receives; neither may overlap a collective of the same group (callers finish their sends first).
    /// </summary>
    void Send(ReadOnlySpan<float> values, int destination);

    /// <summary>Receives the next message <paramref name="source"/> sent to this rank, which must be values.Length floats.</summary>
    void Receive(Span<float> values, int source);
}
