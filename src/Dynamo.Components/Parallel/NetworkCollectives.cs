using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Dynamo.Llm.Parallel;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The network twin of <see cref="InProcessCollectives"/>: <see cref="JoinAsync"/> gives this process's
/// <see cref="ICollectiveGroup"/> once every rank of its group has joined at the init address (Parallel/README.md).
/// </summary>
public static class NetworkCollectives
{
    private const uint DataMagic = 0x4C444344; // "DCDL"
    private const uint ReadyMagic = 0x59444344; // "DCDY"

    /// <summary>
    /// Joins the group <paramref name="member"/> names: the rendezvous (rank 0 listens on the init address and checks
    /// every rank's agreement), then a connection between every two ranks and, where several ranks share a host, the
    /// shared-memory file. <see cref="CollectiveException"/> (one line, naming the rank at fault where there is one)
    /// when the ranks disagree, a rank is missing past <see cref="CollectiveGroupOptions.StartTimeout"/> or a
    /// connection fails; <see cref="ArgumentException"/> naming the flag for a bad member or option.
    /// </summary>
    public static async Task<ICollectiveGroup> JoinAsync(CollectiveMember member, CollectiveGroupOptions? options = null, CancellationToken cancellationToken = default)
    {
        member.Validate();
        options = (options ?? CollectiveGroupOptions.Default).Validate();
        if (member.Size == 1)
        {
            return new NetworkCollectiveGroup(0, 1, null, options, "rank 0: alone");
        }

        string hostId = options.HostId ?? HostIdentity.Local;
        using Socket listener = ListenForData(options);
        int dataPort = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Rendezvous.Result met = member.Rank == 0
            ? await Rendezvous.HostAsync(member, hostId, dataPort, options, cancellationToken).ConfigureAwait(false)
            : await Rendezvous.JoinAsync(member, hostId, dataPort, options, cancellationToken).ConfigureAwait(false);

        int[] local = LocalIndices(member, met, hostId, options);
        int localCount = local.Count(i => i >= 0);
        int leader = Array.FindIndex(local, i => i >= 0);
        string path = Path.Combine(options.SharedMemoryDirectory, Invariant($"dynamo-collectives-{met.Session:x16}-{leader}"));
        var sockets = new Socket?[member.Size];
        SharedSlots? shm = null;
        try
        {
            if (localCount > 1 && member.Rank == leader)
            {
                shm = SharedSlots.Create(path, localCount, options.PieceBytes, met.Session);
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(options.StartTimeout);
            try
            {
                await ConnectAllAsync(member.Rank, met, listener, sockets, options, deadline.Token).ConfigureAwait(false);
                if (localCount > 1 && member.Rank != leader)
                {
                    shm = SharedSlots.Open(path, localCount, options.PieceBytes, met.Session);
                }

                await ReadyAsync(sockets, deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                int missing = Array.FindIndex(sockets, s => s is null);
                throw new CollectiveException(Invariant($"rank {member.Rank}: the data connections of the group did not come up within {options.StartTimeout.TotalSeconds:0.#} s"), missing >= 0 && missing != member.Rank ? missing : null);
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                throw new CollectiveException(Invariant($"rank {member.Rank}: setting up the group's connections failed: {e.Message}"), null, e);
            }
            finally
            {
                if (member.Rank == leader && localCount > 1)
                {
                    File.Delete(path);
                }
            }

            foreach (Socket? s in sockets)
            {
                if (s is not null)
                {
                    s.Blocking = false;
                }
            }

            var mesh = new CollectiveMesh(member.Rank, sockets, local, shm, options.OperationTimeout, options.SpinTime);
            return new NetworkCollectiveGroup(member.Rank, member.Size, mesh, options, Describe(member.Rank, local, localCount));
        }
        catch
        {
            foreach (Socket? s in sockets)
            {
                s?.Dispose();
            }

            shm?.Dispose();
            throw;
        }
    }

    /// <summary>Per rank, its index among the ranks that share memory with this one (this host's, when the transport is Auto), else -1.</summary>
    private static int[] LocalIndices(CollectiveMember member, Rendezvous.Result met, string hostId, CollectiveGroupOptions options)
    {
        int[] local = new int[member.Size];
        int next = 0;
        for (int r = 0; r < member.Size; r++)
        {
            bool shares = r == member.Rank || (options.Transport == CollectiveTransport.Auto && met.Peers[r].HostId == hostId);
            local[r] = shares ? next++ : -1;
        }

        return local;
    }

    private static string Describe(int rank, int[] local, int localCount)
    {
        string shared = localCount > 1 ? string.Join(",", local.Select((l, r) => (l, r)).Where(x => x.l >= 0).Select(x => x.r)) : "";
        string tcp = string.Join(",", local.Select((l, r) => (l, r)).Where(x => x.l < 0).Select(x => x.r));
        return Invariant($"rank {rank}: {(shared.Length > 0 ? $"shared memory with ranks {shared}" : "no shared memory")}{(tcp.Length > 0 ? $", TCP to ranks {tcp}" : "")}");
    }

    /// <summary>The data listener: every interface (IPv6 and IPv4 where the host has IPv6), a free port.</summary>
    private static Socket ListenForData(CollectiveGroupOptions options)
    {
        Socket listener;
        try
        {
            listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
            listener.Bind(new IPEndPoint(IPAddress.IPv6Any, 0));
        }
        catch (SocketException)
        {
            listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Any, 0));
        }

        Configure(listener, options);
        listener.Listen(128);
        return listener;
    }

    private static void Configure(Socket socket, CollectiveGroupOptions options)
    {
        if (options.SocketBufferBytes > 0)
        {
            socket.SendBufferSize = options.SocketBufferBytes;
            socket.ReceiveBufferSize = options.SocketBufferBytes;
        }
    }

    /// <summary>
    /// Connects to every lower rank and accepts every higher one. Each connection starts with the connecting rank's
    /// greeting (magic, session, rank), which the accepting rank checks and acknowledges with the same magic.
    /// </summary>
    private static async Task ConnectAllAsync(int rank, Rendezvous.Result met, Socket listener, Socket?[] sockets, CollectiveGroupOptions options, CancellationToken cancellationToken)
    {
        var tasks = new List<Task>();
        for (int r = 0; r < rank; r++)
        {
            tasks.Add(ConnectAsync(r));
        }

        if (rank < sockets.Length - 1)
        {
            tasks.Add(AcceptAllAsync());
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);

        async Task ConnectAsync(int peer)
        {
            RendezvousPeer to = met.Peers[peer];
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            Configure(socket, options);
            try
            {
                await socket.ConnectAsync(IPAddress.Parse(to.Host), to.Port, cancellationToken).ConfigureAwait(false);
                byte[] greeting = Greeting(DataMagic, met.Session, rank);
                await socket.SendAsync(greeting, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                byte[] ack = new byte[greeting.Length];
                if (!await Rendezvous.ReceiveAsync(socket, ack, cancellationToken).ConfigureAwait(false) || !ack.AsSpan().SequenceEqual(Greeting(DataMagic, met.Session, peer)))
                {
                    throw new IOException(Invariant($"rank {peer} at {to.Host}:{to.Port} did not acknowledge the data connection of rank {rank}"));
                }

                sockets[peer] = socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        async Task AcceptAllAsync()
        {
            int expected = sockets.Length - 1 - rank;
            for (int accepted = 0; accepted < expected;)
            {
                Socket socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
                byte[] greeting = new byte[16];
                int from;
                try
                {
                    using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    bound.CancelAfter(TimeSpan.FromSeconds(10));
                    bool complete = await Rendezvous.ReceiveAsync(socket, greeting, bound.Token).ConfigureAwait(false);
                    from = BinaryPrimitives.ReadInt32LittleEndian(greeting.AsSpan(12));
                    if (!complete || !greeting.AsSpan().SequenceEqual(Greeting(DataMagic, met.Session, from)) || from <= rank || from >= sockets.Length || sockets[from] is not null)
                    {
                        socket.Dispose();
                        continue;
                    }

                    socket.NoDelay = true;
                    await socket.SendAsync(Greeting(DataMagic, met.Session, rank), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    socket.Dispose();
                    continue;
                }

                sockets[from] = socket;
                accepted++;
            }
        }
    }

    /// <summary>Every rank tells every other it is ready (the shared memory mapped) and waits for the same from all.</summary>
    private static async Task ReadyAsync(Socket?[] sockets, CancellationToken cancellationToken)
    {
        byte[] ready = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(ready, ReadyMagic);
        var reads = new List<Task>();
        foreach (Socket? s in sockets)
        {
            if (s is not null)
            {
                await s.SendAsync(ready, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                reads.Add(ReadReadyAsync(s));
            }
        }

        await Task.WhenAll(reads).ConfigureAwait(false);

        async Task ReadReadyAsync(Socket s)
        {
            byte[] answer = new byte[4];
            if (!await Rendezvous.ReceiveAsync(s, answer, cancellationToken).ConfigureAwait(false) || !answer.AsSpan().SequenceEqual(ready))
            {
                throw new IOException(Invariant($"a peer at {s.RemoteEndPoint} closed its connection before the group was ready"));
            }
        }
    }

    private static byte[] Greeting(uint magic, ulong session, int rank)
    {
        byte[] greeting = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(greeting, magic);
        BinaryPrimitives.WriteUInt64LittleEndian(greeting.AsSpan(4), session);
        BinaryPrimitives.WriteInt32LittleEndian(greeting.AsSpan(12), rank);
        return greeting;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
