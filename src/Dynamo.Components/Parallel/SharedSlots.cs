using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The shared-memory file of the ranks of one host (Parallel/README.md, "Shared memory"): a header, one control line per
/// local rank (the step it entered, the step it last published, the length of its publication in each parity, its state, the rank it sleeps waiting on) and two slots
/// per local rank, used by the parity of the step. Only the owner of a line or a slot writes it. Every access goes
/// through <see cref="SafeBuffer"/> (no unsafe code outside Dynamo.Engine), whose reference counting brackets each
/// read and write with interlocked operations: a reader that sees a step published sees its data. After the slots, one
/// mailbox per ordered pair of local ranks carries point-to-point messages (pipeline parallelism) one piece at a time:
/// the sender writes the piece, its length, then the piece's number (posted); the receiver copies it out, then writes
/// the number back (taken), which frees the mailbox for the next piece.
/// </summary>
internal sealed class SharedSlots : IDisposable
{
    /// <summary>A rank's state in its control line.</summary>
    public const long Alive = 0, Gone = 1, Broken = 2;

    private const long Magic = 0x44594E414D4F434C; // "DYNAMOCL"
    private const long Version = 2;
    private const int ControlStart = 256, ControlLine = 128;
    private const int MailHeader = 64, MailPostedField = 0, MailTakenField = 8, MailLengthField = 16;
    private const int EnteredField = 0, PublishedField = 8, LengthField = 16, StateField = 32, LostRankField = 40, WaitingField = 48;

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly SafeBuffer _buffer;
    private readonly ulong _base;
    private readonly long _dataStart;
    private readonly int _slotBytes;
    private readonly int _ranks;

    private SharedSlots(MemoryMappedFile file, long capacity, int slotBytes, int ranks)
    {
        _file = file;
        _view = file.CreateViewAccessor(0, capacity, MemoryMappedFileAccess.ReadWrite);
        _buffer = _view.SafeMemoryMappedViewHandle;
        _base = (ulong)_view.PointerOffset;
        _slotBytes = slotBytes;
        _ranks = ranks;
        _dataStart = DataStart(ranks);
    }

    /// <summary>Bytes of one slot: the largest publication.</summary>
    public int SlotBytes => _slotBytes;

    /// <summary>Creates the file at <paramref name="path"/> (which must not exist) for <paramref name="ranks"/> local ranks.</summary>
    public static SharedSlots Create(string path, int ranks, int slotBytes, ulong session)
    {
        long capacity = Capacity(ranks, slotBytes);
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.CreateNew, null, capacity, MemoryMappedFileAccess.ReadWrite);
        var slots = new SharedSlots(file, capacity, slotBytes, ranks);
        slots.Write(8, Version);
        slots.Write(16, ranks);
        slots.Write(24, slotBytes);
        slots.Write(32, (long)session);
        slots.Write(0, Magic);
        return slots;
    }

    /// <summary>
    /// Maps the file another local rank created; <see cref="IOException"/> when it is absent or was made for another
    /// group (another session, count of ranks or slot size).
    /// </summary>
    public static SharedSlots Open(string path, int ranks, int slotBytes, ulong session)
    {
        long capacity = Capacity(ranks, slotBytes);
        if (!File.Exists(path))
        {
            throw new IOException($"{path} does not exist: the ranks that share a host id do not share {Path.GetDirectoryName(path)} (use the TCP transport, or distinct host ids)");
        }

        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        SharedSlots slots;
        try
        {
            slots = new SharedSlots(file, capacity, slotBytes, ranks);
        }
        catch
        {
            file.Dispose();
            throw;
        }

        if (slots.Read(0) != Magic || slots.Read(8) != Version || slots.Read(16) != ranks || slots.Read(24) != slotBytes || slots.Read(32) != (long)session)
        {
            slots.Dispose();
            throw new IOException($"{path} belongs to another collective group");
        }

        return slots;
    }

    public long Entered(int local) => Read(Line(local) + EnteredField);

    public void SetEntered(int local, long step) => Write(Line(local) + EnteredField, step);

    public long Published(int local) => Read(Line(local) + PublishedField);

    /// <summary>The length of <paramref name="local"/>'s publication of <paramref name="step"/> (one per parity: a publisher may be a step ahead of its reader).</summary>
    public long PublishedLength(int local, long step) => Read(Line(local) + LengthField + (8 * (step & 1)));

    public long State(int local) => Read(Line(local) + StateField);

    public int LostRank(int local) => (int)Read(Line(local) + LostRankField);

    /// <summary>Which group rank <paramref name="local"/> sleeps waiting on, plus 1 (0: it is not sleeping): that rank rings it.</summary>
    public long Waiting(int local) => Read(Line(local) + WaitingField);

    public void SetWaiting(int local, long rankPlusOne) => Write(Line(local) + WaitingField, rankPlusOne);

    /// <summary>Marks <paramref name="local"/> gone or broken (naming <paramref name="lostRank"/>, the group rank it lost).</summary>
    public void SetState(int local, long state, int lostRank)
    {
        Write(Line(local) + LostRankField, lostRank);
        Write(Line(local) + StateField, state);
    }

    /// <summary>Writes <paramref name="data"/> into <paramref name="local"/>'s slot of <paramref name="step"/>'s parity, then its length, then the step.</summary>
    public void Publish(int local, long step, ReadOnlySpan<byte> data)
    {
        Copy(_base + Slot(local, step), data);
        Write(Line(local) + LengthField + (8 * (step & 1)), data.Length);
        Write(Line(local) + PublishedField, step);
    }

    /// <summary>Copies bytes <paramref name="offset"/> .. + destination.Length of <paramref name="local"/>'s publication of <paramref name="step"/>.</summary>
    public void Read(int local, long step, int offset, Span<byte> destination)
    {
        ulong at = _base + Slot(local, step) + (ulong)offset;
        int big = destination.Length / Page.Bytes * Page.Bytes, line = (destination.Length - big) / Line64.Bytes * Line64.Bytes;
        _buffer.ReadSpan(at, MemoryMarshal.Cast<byte, Page>(destination[..big]));
        _buffer.ReadSpan(at + (ulong)big, MemoryMarshal.Cast<byte, Line64>(destination.Slice(big, line)));
        _buffer.ReadSpan(at + (ulong)(big + line), destination[(big + line)..]);
    }

    /// <summary>The number of the last piece <paramref name="from"/> posted to <paramref name="to"/> (0: none yet).</summary>
    public long MailPosted(int from, int to) => Read(Mailbox(from, to) + MailPostedField);

    /// <summary>The number of the last piece from <paramref name="from"/> that <paramref name="to"/> took.</summary>
    public long MailTaken(int from, int to) => Read(Mailbox(from, to) + MailTakenField);

    /// <summary>The length of the piece now in the mailbox from <paramref name="from"/> to <paramref name="to"/>.</summary>
    public long MailLength(int from, int to) => Read(Mailbox(from, to) + MailLengthField);

    /// <summary>Writes piece <paramref name="number"/> into the mailbox (the receiver took the one before): data, length, then its number.</summary>
    public void PostMail(int from, int to, long number, ReadOnlySpan<byte> data)
    {
        long box = Mailbox(from, to);
        Copy(_base + (ulong)(box + MailHeader), data);
        Write(box + MailLengthField, data.Length);
        Write(box + MailPostedField, number);
    }

    /// <summary>Copies the piece now in the mailbox out, then marks piece <paramref name="number"/> taken.</summary>
    public void TakeMail(int from, int to, long number, Span<byte> destination)
    {
        long box = Mailbox(from, to);
        ulong at = _base + (ulong)(box + MailHeader);
        int big = destination.Length / Page.Bytes * Page.Bytes, line = (destination.Length - big) / Line64.Bytes * Line64.Bytes;
        _buffer.ReadSpan(at, MemoryMarshal.Cast<byte, Page>(destination[..big]));
        _buffer.ReadSpan(at + (ulong)big, MemoryMarshal.Cast<byte, Line64>(destination.Slice(big, line)));
        _buffer.ReadSpan(at + (ulong)(big + line), destination[(big + line)..]);
        Write(box + MailTakenField, number);
    }

    public void Dispose()
    {
        _view.Dispose();
        _file.Dispose();
    }

    /// <summary>
    /// Writes <paramref name="data"/> at <paramref name="at"/>. SafeBuffer copies a span element by element, so the bytes
    /// go as 4 KB and 64-byte elements and only the last few one by one: memcpy speed (1 MB in about the time of a
    /// memcpy, against 30x that byte by byte, measured on this project's 2-core Xeon).
    /// </summary>
    private void Copy(ulong at, ReadOnlySpan<byte> data)
    {
        int big = data.Length / Page.Bytes * Page.Bytes, line = (data.Length - big) / Line64.Bytes * Line64.Bytes;
        _buffer.WriteSpan(at, MemoryMarshal.Cast<byte, Page>(data[..big]));
        _buffer.WriteSpan(at + (ulong)big, MemoryMarshal.Cast<byte, Line64>(data.Slice(big, line)));
        _buffer.WriteSpan(at + (ulong)(big + line), data[(big + line)..]);
    }

    private static long Capacity(int ranks, int slotBytes) => DataStart(ranks) + (2L * ranks * slotBytes) + ((long)ranks * ranks * (MailHeader + slotBytes));

    private long Mailbox(int from, int to) => _dataStart + (2L * _ranks * _slotBytes) + (((long)from * _ranks) + to) * (MailHeader + _slotBytes);

    private static long DataStart(int ranks) => (ControlStart + (long)ranks * ControlLine + 4095) / 4096 * 4096;

    private static long Line(int local) => ControlStart + (long)local * ControlLine;

    private ulong Slot(int local, long step) => (ulong)(_dataStart + ((2L * local) + (step & 1)) * _slotBytes);

    private long Read(long offset) => _buffer.Read<long>(_base + (ulong)offset);

    private void Write(long offset, long value) => _buffer.Write(_base + (ulong)offset, value);

    /// <summary>4 KB, one element of a bulk copy.</summary>
    [InlineArray(Bytes / sizeof(long))]
    private struct Page
    {
        public const int Bytes = 4096;
        private long _element;
    }

    /// <summary>64 bytes, one element of the rest of a copy.</summary>
    [InlineArray(Bytes / sizeof(long))]
    private struct Line64
    {
        public const int Bytes = 64;
        private long _element;
    }
}
