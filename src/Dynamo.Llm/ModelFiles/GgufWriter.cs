using System.Text;

namespace Dynamo.Llm.ModelFiles;

/// <summary>
/// Writes a GGUF v3 file to a stream, streaming the tensor data: declare every metadata key and tensor first
/// (<see cref="Add(string, string)"/> and friends, <see cref="AddTensor"/>), then <see cref="WriteHeader"/>, then
/// the tensors' bytes in declaration order with <see cref="WriteTensorData"/> (in as many chunks as wanted), then
/// <see cref="Finish"/>. Layout: magic "GGUF", version 3, tensor count u64, metadata count u64, the key/values, the
/// tensor infos (name, n_dims u32, dims u64 in ggml order, type u32, offset u64 from the data start), padding
/// to the alignment, then each tensor's data padded to the alignment.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>GGUF's default alignment (general.alignment).</summary>
    public const int DefaultAlignment = 32;

    // gguf_type values of the specification (the ones written here).
    private const uint TypeUInt32 = 4;
    private const uint TypeInt32 = 5;
    private const uint TypeFloat32 = 6;
    private const uint TypeBool = 7;
    private const uint TypeString = 8;
    private const uint TypeArray = 9;
    private const uint TypeUInt64 = 10;

    private readonly Stream _stream;
    private readonly int _alignment;
    private readonly List<(string Key, Action<BinaryWriter> WriteValue)> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<TensorInfo> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private bool _headerWritten;
    private int _current;
    private long _currentWritten;

    /// <param name="stream">Where the file goes; written sequentially, never sought, not disposed here.</param>
    /// <param name="alignment">Data alignment; a value other than 32 is also written as general.alignment by the caller.</param>
    public GgufWriter(Stream stream, int alignment = DefaultAlignment)
    {
        if (alignment <= 0 || alignment % 8 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), "alignment must be a positive multiple of 8");
        }

        _stream = stream;
        _alignment = alignment;
    }

    /// <summary>Bytes written so far.</summary>
    public long BytesWritten { get; private set; }

    public void Add(string key, string value) => AddValue(key, w => { w.Write(TypeString); WriteString(w, value); });

    public void Add(string key, uint value) => AddValue(key, w => { w.Write(TypeUInt32); w.Write(value); });

    public void Add(string key, int value) => AddValue(key, w => { w.Write(TypeInt32); w.Write(value); });

    public void Add(string key, ulong value) => AddValue(key, w => { w.Write(TypeUInt64); w.Write(value); });

    public void Add(string key, float value) => AddValue(key, w => { w.Write(TypeFloat32); w.Write(value); });

    public void Add(string key, bool value) => AddValue(key, w => { w.Write(TypeBool); w.Write((byte)(value ? 1 : 0)); });

    public void Add(string key, IReadOnlyList<string> values) => AddValue(key, w =>
    {
        WriteArrayHeader(w, TypeString, values.Count);
        foreach (string v in values)
        {
            WriteString(w, v);
        }
    });

    public void Add(string key, IReadOnlyList<float> values) => AddValue(key, w =>
    {
        WriteArrayHeader(w, TypeFloat32, values.Count);
        foreach (float v in values)
        {
            w.Write(v);
        }
    });

    public void Add(string key, IReadOnlyList<int> values) => AddValue(key, w =>
    {
        WriteArrayHeader(w, TypeInt32, values.Count);
        foreach (int v in values)
        {
            w.Write(v);
        }
    });

    /// <summary>
    /// Adds a value as <see cref="GgufFile.Metadata"/> holds it (to copy metadata from one file to another):
    /// strings, booleans, 32-bit floats, integers (small ones widened to 32 bits, 64-bit ones kept), and
    /// arrays of strings, floats or 32-bit integers.
    /// </summary>
    public void AddObject(string key, object value)
    {
        switch (value)
        {
            case string s: Add(key, s); break;
            case bool b: Add(key, b); break;
            case float f: Add(key, f); break;
            case double d: Add(key, (float)d); break;
            case uint u: Add(key, u); break;
            case byte u: Add(key, (uint)u); break;
            case ushort u: Add(key, (uint)u); break;
            case int i: Add(key, i); break;
            case sbyte i: Add(key, (int)i); break;
            case short i: Add(key, (int)i); break;
            case ulong u: Add(key, u); break;
            case long l: Add(key, unchecked((ulong)l)); break;
            case string[] a: Add(key, a); break;
            case float[] a: Add(key, a); break;
            case int[] a: Add(key, a); break;
            case uint[] a: Add(key, a.Select(x => unchecked((int)x)).ToArray()); break;
            default: throw new ArgumentException($"metadata key '{key}': values of type {value.GetType().Name} cannot be copied", nameof(value));
        }
    }

    /// <summary>Declares a tensor; <paramref name="dims"/> in ggml order (innermost first: [in, out] for a weight matrix).</summary>
    public void AddTensor(string name, GgmlType type, ReadOnlySpan<long> dims)
    {
        EnsureNotStarted();
        if (dims.Length is < 1 or > 4)
        {
            throw new ArgumentException($"tensor {name}: {dims.Length} dimensions (1 to 4 allowed)", nameof(dims));
        }

        if (!_tensorNames.Add(name))
        {
            throw new ArgumentException($"tensor {name} declared twice", nameof(name));
        }

        long elements = 1;
        foreach (long d in dims)
        {
            if (d <= 0)
            {
                throw new ArgumentException($"tensor {name}: dimension {d}", nameof(dims));
            }

            elements *= d;
        }

        int block = GgmlTypeInfo.BlockSize(type);
        if (dims[0] % block != 0)
        {
            throw new ArgumentException($"tensor {name}: innermost dimension {dims[0]} is not a multiple of {type}'s block of {block}", nameof(dims));
        }

        long offset = _tensors.Count == 0 ? 0 : Align(_tensors[^1].Offset + _tensors[^1].Size);
        _tensors.Add(new TensorInfo(name, type, dims.ToArray(), offset, GgmlTypeInfo.ByteSize(type, elements)));
    }

    /// <summary>Writes the header, the metadata and the tensor infos, and pads to the data start.</summary>
    public void WriteHeader()
    {
        EnsureNotStarted();
        _headerWritten = true;
        using var header = new MemoryStream();
        using (var w = new BinaryWriter(header, Encoding.UTF8, leaveOpen: true))
        {
            w.Write("GGUF"u8);
            w.Write(3u);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_metadata.Count);
            foreach (var (key, writeValue) in _metadata)
            {
                WriteString(w, key);
                writeValue(w);
            }

            foreach (TensorInfo t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Dims.Length);
                foreach (long d in t.Dims)
                {
                    w.Write((ulong)d);
                }

                w.Write((uint)t.Type);
                w.Write((ulong)t.Offset);
            }
        }

        header.Position = 0;
        header.CopyTo(_stream);
        BytesWritten = header.Length;
        Pad();
    }

    /// <summary>
    /// Appends bytes of the current tensor (the first not yet complete, in declaration order). A chunk may not run
    /// past the end of the tensor; when a tensor is complete the padding to the next one is written.
    /// </summary>
    public void WriteTensorData(ReadOnlySpan<byte> data)
    {
        if (!_headerWritten)
        {
            throw new InvalidOperationException("WriteHeader first");
        }

        if (_current >= _tensors.Count)
        {
            throw new InvalidOperationException("every declared tensor is already written");
        }

        TensorInfo t = _tensors[_current];
        if (_currentWritten + data.Length > t.Size)
        {
            throw new InvalidOperationException($"tensor {t.Name}: {_currentWritten + data.Length} bytes written, {t.Size} declared");
        }

        _stream.Write(data);
        BytesWritten += data.Length;
        _currentWritten += data.Length;
        if (_currentWritten == t.Size)
        {
            _current++;
            _currentWritten = 0;
            Pad();
        }
    }

    /// <summary>Checks that every tensor was written and flushes the stream.</summary>
    public void Finish()
    {
        if (!_headerWritten || _current != _tensors.Count)
        {
            string missing = _current < _tensors.Count ? _tensors[_current].Name : "(header)";
            throw new InvalidOperationException($"GGUF incomplete: {missing} not written");
        }

        _stream.Flush();
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        int count = Encoding.UTF8.GetByteCount(s);
        Span<byte> bytes = count <= 512 ? stackalloc byte[count] : new byte[count];
        Encoding.UTF8.GetBytes(s, bytes);
        w.Write((ulong)count);
        w.Write(bytes);
    }

    private static void WriteArrayHeader(BinaryWriter w, uint elementType, int count)
    {
        w.Write(TypeArray);
        w.Write(elementType);
        w.Write((ulong)count);
    }

    private void AddValue(string key, Action<BinaryWriter> writeValue)
    {
        EnsureNotStarted();
        if (!_keys.Add(key))
        {
            throw new ArgumentException($"metadata key {key} added twice", nameof(key));
        }

        _metadata.Add((key, writeValue));
    }

    private void EnsureNotStarted()
    {
        if (_headerWritten)
        {
            throw new InvalidOperationException("the header is already written");
        }
    }

    private long Align(long offset) => (offset + _alignment - 1) / _alignment * _alignment;

    private void Pad()
    {
        int padding = (int)(Align(BytesWritten) - BytesWritten);
        Span<byte> zeros = stackalloc byte[padding];
        zeros.Clear();
        _stream.Write(zeros);
        BytesWritten += padding;
    }

    private sealed record TensorInfo(string Name, GgmlType Type, long[] Dims, long Offset, long Size);
}
