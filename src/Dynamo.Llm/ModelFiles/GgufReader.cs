using System.Text;

namespace Dynamo.Llm.ModelFiles;

/// <summary>
/// Buffered little-endian reader over a file that knows how many bytes remain, so that a corrupt
/// count or length fails with a one-line <see cref="ModelFormatException"/> instead of an
/// out-of-memory or an end-of-stream exception deep inside.
/// </summary>
internal sealed class GgufReader : IDisposable
{
    private const int BufferSize = 1 << 20;
    private readonly FileStream _stream;
    private readonly byte[] _buffer;
    private int _pos;
    private int _end;
    private long _bufferStart;

    public GgufReader(string path)
    {
        Path = path;
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        Length = _stream.Length;
        _buffer = new byte[BufferSize];
    }

    public string Path { get; }
    public long Length { get; }
    public long Position => _bufferStart + _pos;
    public long Remaining => Length - Position;

    public ModelFormatException Error(string problem) => new(Path, problem);

    private ReadOnlySpan<byte> Take(int n, string what)
    {
        if (_end - _pos < n)
        {
            Fill(n, what);
        }

        var span = new ReadOnlySpan<byte>(_buffer, _pos, n);
        _pos += n;
        return span;
    }

    private void Fill(int n, string what)
    {
        if (Remaining < n)
        {
            throw Error($"file truncated at byte {Position} while reading {what} ({n} bytes needed, {Remaining} left)");
        }

        int keep = _end - _pos;
        Buffer.BlockCopy(_buffer, _pos, _buffer, 0, keep);
        _bufferStart += _pos;
        _pos = 0;
        _end = keep;
        while (_end < n)
        {
            int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
            if (read == 0)
            {
                throw Error($"file truncated at byte {Position + _end} while reading {what}");
            }

            _end += read;
        }
    }

    public byte U8(string what) => Take(1, what)[0];
    public ushort U16(string what) => BitConverter.ToUInt16(Take(2, what));
    public uint U32(string what) => BitConverter.ToUInt32(Take(4, what));
    public ulong U64(string what) => BitConverter.ToUInt64(Take(8, what));
    public float F32(string what) => BitConverter.ToSingle(Take(4, what));
    public double F64(string what) => BitConverter.ToDouble(Take(8, what));

    /// <summary>A count that must fit in the rest of the file at <paramref name="minBytesEach"/> bytes per item.</summary>
    public long Count(string what, int minBytesEach)
    {
        ulong n = U64(what);
        if (n > (ulong)Math.Max(0, Remaining) / (ulong)Math.Max(1, minBytesEach))
        {
            throw Error($"{what} {n} is impossible: only {Remaining} bytes follow at byte {Position}");
        }

        return (long)n;
    }

    public string String(string what)
    {
        ulong n = U64(what + " length");
        if (n > (ulong)Math.Max(0, Remaining))
        {
            throw Error($"{what}: string length {n} goes beyond the end of the file (byte {Position}, {Remaining} left)");
        }

        int len = (int)n;
        if (len <= BufferSize)
        {
            return len == 0 ? string.Empty : Encoding.UTF8.GetString(Take(len, what));
        }

        byte[] big = new byte[len];
        int have = _end - _pos;
        Buffer.BlockCopy(_buffer, _pos, big, 0, have);
        _pos = _end;
        _stream.ReadExactly(big, have, len - have);
        _bufferStart += len - have;
        return Encoding.UTF8.GetString(big);
    }

    public void Dispose() => _stream.Dispose();
}
