using System.Text;
using System.Text.Json;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// Writes a .safetensors file, streaming the data: the tensors are declared up front (name, dtype, shape in
/// row-major order [out, in]), the header is written (u64 length, then JSON
/// <c>{"__metadata__": {"format": "pt"}, name: {dtype, shape, data_offsets: [start, end]}}</c> padded with
/// spaces to a multiple of 8), then the data of each tensor in declaration order, back to back.
/// </summary>
internal sealed class SafetensorsWriter
{
    private readonly Stream _stream;
    private readonly IReadOnlyList<Entry> _entries;
    private int _current;
    private long _currentWritten;

    public SafetensorsWriter(Stream stream, IReadOnlyList<(string Name, string DType, long[] Shape)> tensors)
    {
        _stream = stream;
        var entries = new List<Entry>(tensors.Count);
        long offset = 0;
        foreach (var (name, dtype, shape) in tensors)
        {
            long size = ElementSize(dtype) * shape.Aggregate(1L, (a, b) => a * b);
            entries.Add(new Entry(name, dtype, shape, offset, size));
            offset += size;
        }

        _entries = entries;
    }

    public long BytesWritten { get; private set; }

    public static int ElementSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => throw new NotSupportedException($"safetensors dtype {dtype} is not written here"),
    };

    public void WriteHeader()
    {
        using var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            w.WriteString("format", "pt");
            w.WriteEndObject();
            foreach (Entry e in _entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.DType);
                w.WriteStartArray("shape");
                foreach (long d in e.Shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(e.Offset);
                w.WriteNumberValue(e.Offset + e.Size);
                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        int padding = (int)((8 - (json.Length % 8)) % 8);
        json.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        Span<byte> length = stackalloc byte[8];
        BitConverter.TryWriteBytes(length, (ulong)json.Length);
        _stream.Write(length);
        json.Position = 0;
        json.CopyTo(_stream);
        BytesWritten = 8 + json.Length;
    }

    /// <summary>Appends bytes of the current tensor; a chunk may not run past its end.</summary>
    public void WriteTensorData(ReadOnlySpan<byte> data)
    {
        if (_current >= _entries.Count || _currentWritten + data.Length > _entries[_current].Size)
        {
            throw new InvalidOperationException("more tensor data than declared");
        }

        _stream.Write(data);
        BytesWritten += data.Length;
        _currentWritten += data.Length;
        if (_currentWritten == _entries[_current].Size)
        {
            _current++;
            _currentWritten = 0;
        }
    }

    public void Finish()
    {
        if (_current != _entries.Count)
        {
            throw new InvalidOperationException($"safetensors incomplete: {_entries[_current].Name} not written");
        }

        _stream.Flush();
    }

    private sealed record Entry(string Name, string DType, long[] Shape, long Offset, long Size);
}
