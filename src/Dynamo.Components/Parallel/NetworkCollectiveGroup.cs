using System.Buffers.Binary;
using System.Net.Sockets;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Dynamo.Llm.Parallel;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The <see cref="ICollectiveGroup"/> of one rank over a <see cref="CollectiveMesh"/> (shared memory within a host,
/// TCP between hosts). The algorithms, all deterministic (Parallel/README.md, "Algorithms"): an all-reduce of a small
/// piece publishes it to every peer and every rank sums all contributions in rank order; a large piece is
/// reduce-scattered (the owner of each chunk sums it in rank order) and all-gathered. Either way each element is
/// ((x0 + x1) + x2) + ..., as <see cref="InProcessCollectives"/> computes it, so every rank holds the same bits.
/// Messages over <see cref="CollectiveGroupOptions.PieceBytes"/> move piece by piece. Scratch buffers grow to the
/// largest piece seen and are kept: a steady stream of decode steps allocates nothing.
/// </summary>
internal sealed class NetworkCollectiveGroup : ICollectiveGroup
{
    private readonly CollectiveMesh? _mesh;
    private readonly int _pieceBytes;
    private readonly int _smallBytes;
    private float[] _sum = [];
    private float[] _received = [];
    private byte[] _bytes = [];

    /// <param name="rank">This rank.</param>
    /// <param name="size">The group's size.</param>
    /// <param name="mesh">The links to the other ranks; null for a group of one.</param>
    /// <param name="options">The piece and small-message sizes.</param>
    /// <param name="description">What <see cref="Links"/> says.</param>
    public NetworkCollectiveGroup(int rank, int size, CollectiveMesh? mesh, CollectiveGroupOptions options, string description)
    {
        Rank = rank;
        Size = size;
        _mesh = mesh;
        _pieceBytes = options.PieceBytes;
        _smallBytes = options.SmallMessageBytes;
        Links = description;
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>How this rank reaches the others, for a log line: "ranks 0-3: shared memory" or with the TCP peers.</summary>
    public string Links { get; }

    public void AllReduceSum(Span<float> values)
    {
        if (_mesh is null)
        {
            return;
        }

        _mesh.CheckUsable();
        int piece = _pieceBytes / sizeof(float);
        try
        {
            for (int at = 0; at < values.Length; at += piece)
            {
                Span<float> part = values.Slice(at, Math.Min(piece, values.Length - at));
                if (part.Length * sizeof(float) <= _smallBytes)
                {
                    AllReduceSmall(part);
                }
                else
                {
                    AllReduceLarge(part);
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            throw _mesh.Fail(e);
        }
    }

    public void Gather(ReadOnlySpan<float> local, Span<float> gathered, int root = 0)
    {
        CheckRoot(root);
        if (Rank == root && gathered.Length != local.Length * Size)
        {
            throw new ArgumentException($"gather: the root needs {local.Length * Size} floats, got {gathered.Length}", nameof(gathered));
        }

        if (_mesh is null)
        {
            local.CopyTo(gathered);
            return;
        }

        _mesh.CheckUsable();
        int piece = _pieceBytes / sizeof(float);
        try
        {
            for (int at = 0; at < local.Length; at += piece)
            {
                ReadOnlySpan<float> part = local.Slice(at, Math.Min(piece, local.Length - at));
                _mesh.BeginStep();
                if (Rank != root)
                {
                    _mesh.Publish(MemoryMarshal.AsBytes(part), onlyTo: root);
                }
                else
                {
                    for (int r = 0; r < Size; r++)
                    {
                        Span<float> destination = gathered.Slice((r * local.Length) + at, part.Length);
                        if (r == Rank)
                        {
                            part.CopyTo(destination);
                        }
                        else
                        {
                            _mesh.Read(r, MemoryMarshal.AsBytes(destination), 0, part.Length * sizeof(float));
                        }
                    }
                }

                _mesh.EndStep();
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            throw _mesh.Fail(e);
        }
    }

    public ReadOnlyMemory<byte> Broadcast(ReadOnlyMemory<byte> message, int root = 0)
    {
        CheckRoot(root);
        if (_mesh is null)
        {
            return message;
        }

        _mesh.CheckUsable();
        try
        {
            return Rank == root ? SendBroadcast(message) : ReceiveBroadcast(root);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            throw _mesh.Fail(e);
        }
    }

    public void Send(ReadOnlySpan<float> values, int destination)
    {
        CheckPeer(destination);
        try
        {
            _mesh!.SendTo(destination, MemoryMarshal.AsBytes(values));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            throw _mesh!.Fail(e);
        }
    }

    public void Receive(Span<float> values, int source)
    {
        CheckPeer(source);
        try
        {
            _mesh!.ReceiveFrom(source, MemoryMarshal.AsBytes(values));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            throw _mesh!.Fail(e);
        }
    }

    public void Dispose() => _mesh?.Dispose();

    private void CheckPeer(int peer)
    {
        if ((uint)peer >= (uint)Size || peer == Rank)
        {
            throw new ArgumentOutOfRangeException(nameof(peer), $"rank {peer} is not another rank of a group of {Size}");
        }
    }

    /// <summary>One exchange: every rank publishes its piece to all and sums all of them in rank order.</summary>
    private void AllReduceSmall(Span<float> part)
    {
        CollectiveMesh mesh = _mesh!;
        int bytes = part.Length * sizeof(float);
        Span<float> sum = Scratch(ref _sum, part.Length);
        Span<float> received = Scratch(ref _received, part.Length);
        mesh.BeginStep();
        mesh.Publish(MemoryMarshal.AsBytes((ReadOnlySpan<float>)part));
        for (int r = 0; r < Size; r++)
        {
            ReadOnlySpan<float> contribution = part;
            if (r != Rank)
            {
                Span<float> into = r == 0 ? sum : received;
                mesh.Read(r, MemoryMarshal.AsBytes(into), 0, bytes);
                contribution = into;
            }

            Accumulate(sum, contribution, r);
        }

        mesh.EndStep();
        sum.CopyTo(part);
    }

    /// <summary>Reduce-scatter (chunk r summed by rank r, in rank order), then all-gather of the sums.</summary>
    private void AllReduceLarge(Span<float> part)
    {
        CollectiveMesh mesh = _mesh!;
        int total = part.Length * sizeof(float);
        (int start, int count) = CollectiveMesh.Chunk(part.Length, Size, Rank);
        Span<float> sum = Scratch(ref _sum, count);
        Span<float> received = Scratch(ref _received, count);
        mesh.BeginStep();
        mesh.Publish(MemoryMarshal.AsBytes((ReadOnlySpan<float>)part), chunked: true);
        for (int r = 0; r < Size; r++)
        {
            ReadOnlySpan<float> contribution = part.Slice(start, count);
            if (r != Rank)
            {
                Span<float> into = r == 0 ? sum : received;
                mesh.Read(r, MemoryMarshal.AsBytes(into), start * sizeof(float), total);
                contribution = into;
            }

            Accumulate(sum, contribution, r);
        }

        mesh.EndStep();
        mesh.BeginStep();
        mesh.Publish(MemoryMarshal.AsBytes((ReadOnlySpan<float>)sum));
        sum.CopyTo(part.Slice(start, count));
        for (int r = 0; r < Size; r++)
        {
            if (r != Rank)
            {
                (int from, int length) = CollectiveMesh.Chunk(part.Length, Size, r);
                Span<float> destination = part.Slice(from, length);
                mesh.Read(r, MemoryMarshal.AsBytes(destination), 0, destination.Length * sizeof(float));
            }
        }

        mesh.EndStep();
    }

    /// <summary>Rank <paramref name="r"/>'s contribution into the running sum: the first one is copied, the next added.</summary>
    private static void Accumulate(Span<float> sum, ReadOnlySpan<float> contribution, int r)
    {
        if (r == 0)
        {
            if (!contribution.Overlaps(sum))
            {
                contribution.CopyTo(sum);
            }
        }
        else
        {
            TensorPrimitives.Add(sum, contribution, sum);
        }
    }

    /// <summary>The root: the first piece carries the total length (8 bytes) and the start of the message; then the rest, piece by piece.</summary>
    private ReadOnlyMemory<byte> SendBroadcast(ReadOnlyMemory<byte> message)
    {
        CollectiveMesh mesh = _mesh!;
        ReadOnlySpan<byte> span = message.Span;
        int first = Math.Min(span.Length, _pieceBytes - sizeof(long));
        Span<byte> head = ByteScratch(sizeof(long) + first);
        BinaryPrimitives.WriteInt64LittleEndian(head, span.Length);
        span[..first].CopyTo(head[sizeof(long)..]);
        mesh.BeginStep();
        mesh.Publish(head);
        mesh.EndStep();
        for (int at = first; at < span.Length; at += _pieceBytes)
        {
            mesh.BeginStep();
            mesh.Publish(span.Slice(at, Math.Min(_pieceBytes, span.Length - at)));
            mesh.EndStep();
        }

        return message;
    }

    private byte[] ReceiveBroadcast(int root)
    {
        CollectiveMesh mesh = _mesh!;
        Span<byte> head = ByteScratch(_pieceBytes);
        mesh.BeginStep();
        int length = mesh.ReadAny(root, head);
        long total = length >= sizeof(long) ? BinaryPrimitives.ReadInt64LittleEndian(head) : -1;
        int first = (int)Math.Min(Math.Max(total, 0), _pieceBytes - sizeof(long));
        if (total < 0 || total > Array.MaxLength || length != sizeof(long) + first)
        {
            throw mesh.Break(root, $"rank {Rank}: the broadcast from rank {root} has a malformed first piece ({length} bytes)");
        }

        byte[] message = new byte[total];
        head.Slice(sizeof(long), first).CopyTo(message);
        mesh.EndStep();
        for (int at = first; at < message.Length; at += _pieceBytes)
        {
            int count = Math.Min(_pieceBytes, message.Length - at);
            mesh.BeginStep();
            mesh.Read(root, message.AsSpan(at, count), 0, count);
            mesh.EndStep();
        }

        return message;
    }

    private void CheckRoot(int root)
    {
        if ((uint)root >= (uint)Size)
        {
            throw new ArgumentOutOfRangeException(nameof(root), $"root {root} is not a rank of a group of {Size}");
        }
    }

    private static Span<float> Scratch(ref float[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            buffer = new float[length];
        }

        return buffer.AsSpan(0, length);
    }

    private Span<byte> ByteScratch(int length)
    {
        if (_bytes.Length < length)
        {
            _bytes = new byte[length];
        }

        return _bytes.AsSpan(0, length);
    }
}
