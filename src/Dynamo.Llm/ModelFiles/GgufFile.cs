using System.Collections.ObjectModel;

namespace Dynamo.Llm.ModelFiles;

/// <summary>
/// The header of a GGUF (v2 or v3) file: metadata, tensor descriptions and where the tensor data
/// starts. Reading it does not touch the tensor data. Every problem (wrong magic, unsupported
/// version, truncation, impossible counts or lengths, unknown value types, tensors beyond the end
/// of the file) is a <see cref="ModelFormatException"/> with a one-line message.
/// </summary>
public sealed class GgufFile
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>Alignment of the data section and of every tensor when general.alignment is absent.</summary>
    public const int DefaultAlignment = 32;

    private const int MaxDims = 4;

    private GgufFile(string path, uint version, long fileLength, Dictionary<string, object> metadata, GgufTensorInfo[] tensors, int alignment, long dataOffset)
    {
        Path = path;
        Version = version;
        FileLength = fileLength;
        Metadata = new ReadOnlyDictionary<string, object>(metadata);
        Tensors = tensors;
        Alignment = alignment;
        DataOffset = dataOffset;
        var byName = new Dictionary<string, GgufTensorInfo>(tensors.Length, StringComparer.Ordinal);
        foreach (GgufTensorInfo t in tensors)
        {
            if (!byName.TryAdd(t.Name, t))
            {
                throw new ModelFormatException(path, $"tensor '{t.Name}' appears twice");
            }
        }

        TensorsByName = byName;
    }

    public string Path { get; }
    public uint Version { get; }
    public long FileLength { get; }

    /// <summary>Every key/value pair. Scalars are boxed as their C# type (byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long, double); arrays are typed arrays (string[], float[], int[], ...).</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }

    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, GgufTensorInfo> TensorsByName { get; }
    public int Alignment { get; }

    /// <summary>Absolute file offset of the data section (tensor offsets are relative to it).</summary>
    public long DataOffset { get; }

    /// <summary>general.architecture, or null when absent.</summary>
    public string? Architecture => Metadata.TryGetValue("general.architecture", out object? v) ? v as string : null;

    /// <summary>Reads and validates the header of a GGUF file.</summary>
    public static GgufFile Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "file not found");
        }

        try
        {
            using var r = new GgufReader(path);
            return Parse(r);
        }
        catch (IOException e)
        {
            throw new ModelFormatException(path, $"cannot read: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new ModelFormatException(path, $"cannot read: {e.Message}", e);
        }
    }

    private static GgufFile Parse(GgufReader r)
    {
        if (r.Length < 4)
        {
            throw r.Error($"not a GGUF file: only {r.Length} bytes");
        }

        uint magic = r.U32("magic");
        if (magic != Magic)
        {
            throw r.Error($"not a GGUF file: magic 0x{magic:X8}, expected 0x{Magic:X8} (\"GGUF\")");
        }

        uint version = r.U32("version");
        if (version == 1)
        {
            throw r.Error("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)");
        }

        if (version is not (2 or 3))
        {
            throw r.Error($"unsupported GGUF version {version} (2 and 3 are supported)");
        }

        // Smallest possible tensor info: empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        long tensorCount = r.Count("tensor count", 32);
        // Smallest possible key/value: empty key (8) + type (4) + one byte.
        long kvCount = r.Count("metadata count", 13);

        var metadata = new Dictionary<string, object>((int)kvCount, StringComparer.Ordinal);
        for (long i = 0; i < kvCount; i++)
        {
            string key = r.String($"metadata key #{i}");
            var type = (GgufValueType)r.U32($"type of '{key}'");
            object value = ReadValue(r, type, key);
            if (!metadata.TryAdd(key, value))
            {
                throw r.Error($"metadata key '{key}' appears twice");
            }
        }

        var tensors = new GgufTensorInfo[tensorCount];
        for (long i = 0; i < tensorCount; i++)
        {
            string name = r.String($"name of tensor #{i}");
            uint nDims = r.U32($"dimension count of tensor '{name}'");
            if (nDims is 0 or > MaxDims)
            {
                throw r.Error($"tensor '{name}' has {nDims} dimensions (1 to {MaxDims} allowed)");
            }

            var dims = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                ulong dim = r.U64($"dimension {d} of tensor '{name}'");
                if (dim == 0 || dim > int.MaxValue || (elements *= (long)dim) > (1L << 40))
                {
                    throw r.Error($"tensor '{name}' has an impossible dimension {dim}");
                }

                dims[d] = (long)dim;
            }

            var ggmlType = (GgmlType)r.U32($"type of tensor '{name}'");
            ulong offset = r.U64($"offset of tensor '{name}'");
            if (offset > (ulong)r.Length)
            {
                throw r.Error($"tensor '{name}' starts at data offset {offset}, beyond the end of the file ({r.Length} bytes)");
            }

            long? size = null;
            if (GgmlTypeInfo.TypeSize(ggmlType) is int typeSize && Enum.IsDefined(ggmlType))
            {
                int block = GgmlTypeInfo.BlockSize(ggmlType);
                if (dims[0] % block != 0)
                {
                    throw r.Error($"tensor '{name}' of type {ggmlType} has {dims[0]} columns, not a multiple of its block size {block}");
                }

                size = elements / block * typeSize;
            }

            tensors[i] = new GgufTensorInfo(name, ggmlType, dims, (long)offset, size);
        }

        int alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out object? a))
        {
            alignment = a is uint u && u is > 0 and <= 1 << 20 && (u & (u - 1)) == 0
                ? (int)u
                : throw r.Error($"general.alignment {a} is not a power of two uint32");
        }

        long dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        foreach (GgufTensorInfo t in tensors)
        {
            if (t.Offset % alignment != 0)
            {
                throw r.Error($"tensor '{t.Name}' offset {t.Offset} is not a multiple of the alignment {alignment}");
            }

            if (t.ByteSize is long bytes && dataOffset + t.Offset + bytes > r.Length)
            {
                throw r.Error($"tensor '{t.Name}' data (bytes {dataOffset + t.Offset}..{dataOffset + t.Offset + bytes}) goes beyond the end of the file ({r.Length} bytes)");
            }
        }

        return new GgufFile(r.Path, version, r.Length, metadata, tensors, alignment, dataOffset);
    }

    private static object ReadValue(GgufReader r, GgufValueType type, string key) => type switch
    {
        GgufValueType.UInt8 => r.U8(key),
        GgufValueType.Int8 => (sbyte)r.U8(key),
        GgufValueType.UInt16 => r.U16(key),
        GgufValueType.Int16 => (short)r.U16(key),
        GgufValueType.UInt32 => r.U32(key),
        GgufValueType.Int32 => (int)r.U32(key),
        GgufValueType.Float32 => r.F32(key),
        GgufValueType.Bool => ReadBool(r, key),
        GgufValueType.String => r.String(key),
        GgufValueType.UInt64 => r.U64(key),
        GgufValueType.Int64 => (long)r.U64(key),
        GgufValueType.Float64 => r.F64(key),
        GgufValueType.Array => ReadArray(r, key),
        _ => throw r.Error($"metadata key '{key}' has unknown value type {(uint)type}"),
    };

    private static bool ReadBool(GgufReader r, string key)
    {
        byte b = r.U8(key);
        return b <= 1 ? b == 1 : throw r.Error($"metadata key '{key}': bool value {b} is neither 0 nor 1");
    }

    private static int ElementBytes(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.String or GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        GgufValueType.Array => 12,
        _ => 0,
    };

    private static object ReadArray(GgufReader r, string key)
    {
        var type = (GgufValueType)r.U32($"element type of '{key}'");
        int each = ElementBytes(type);
        if (each == 0)
        {
            throw r.Error($"metadata key '{key}' is an array of unknown value type {(uint)type}");
        }

        int n = checked((int)r.Count($"array length of '{key}'", each));
        return type switch
        {
            GgufValueType.UInt8 => Fill(n, () => r.U8(key)),
            GgufValueType.Int8 => Fill(n, () => (sbyte)r.U8(key)),
            GgufValueType.UInt16 => Fill(n, () => r.U16(key)),
            GgufValueType.Int16 => Fill(n, () => (short)r.U16(key)),
            GgufValueType.UInt32 => Fill(n, () => r.U32(key)),
            GgufValueType.Int32 => Fill(n, () => (int)r.U32(key)),
            GgufValueType.Float32 => Fill(n, () => r.F32(key)),
            GgufValueType.Bool => Fill(n, () => ReadBool(r, key)),
            GgufValueType.String => Fill(n, () => r.String(key)),
            GgufValueType.UInt64 => Fill(n, () => r.U64(key)),
            GgufValueType.Int64 => Fill(n, () => (long)r.U64(key)),
            GgufValueType.Float64 => Fill(n, () => r.F64(key)),
            _ => Fill(n, () => ReadArray(r, key)),
        };
    }

    private static T[] Fill<T>(int n, Func<T> read)
    {
        var a = new T[n];
        for (int i = 0; i < a.Length; i++)
        {
            a[i] = read();
        }

        return a;
    }

    public bool ContainsKey(string key) => Metadata.ContainsKey(key);

    public string GetString(string key) => TryGetString(key, out string? s) ? s : throw Missing(key, "a string");

    public bool TryGetString(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
    {
        value = null;
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return false;
        }

        value = v as string ?? throw WrongType(key, v, "a string");
        return true;
    }

    /// <summary>An unsigned integer of any integer value type, range-checked.</summary>
    public uint GetUInt(string key) => TryGetUInt(key, out uint u) ? u : throw Missing(key, "an unsigned integer");

    public bool TryGetUInt(string key, out uint value)
    {
        value = 0;
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return false;
        }

        long? n = v switch
        {
            byte x => x,
            sbyte x => x,
            ushort x => x,
            short x => x,
            uint x => x,
            int x => x,
            ulong x => x > uint.MaxValue ? -1 : (long)x,
            long x => x,
            _ => throw WrongType(key, v, "an unsigned integer"),
        };
        if (n is < 0 or > uint.MaxValue)
        {
            throw new ModelFormatException(Path, $"metadata key '{key}' = {v} is out of range for an unsigned 32-bit integer");
        }

        value = (uint)n.Value;
        return true;
    }

    /// <summary>A float32 or float64 value (as float).</summary>
    public float GetFloat(string key) => TryGetFloat(key, out float f) ? f : throw Missing(key, "a float");

    public bool TryGetFloat(string key, out float value)
    {
        value = 0;
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return false;
        }

        value = v switch
        {
            float f => f,
            double d => (float)d,
            _ => throw WrongType(key, v, "a float"),
        };
        return true;
    }

    /// <summary>An array value whose elements are exactly <typeparamref name="T"/> (string, float, int, uint, ...).</summary>
    public T[] GetArray<T>(string key) => TryGetArray(key, out T[]? a) ? a : throw Missing(key, $"an array of {typeof(T).Name}");

    public bool TryGetArray<T>(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out T[]? value)
    {
        value = null;
        if (!Metadata.TryGetValue(key, out object? v))
        {
            return false;
        }

        value = v as T[] ?? throw WrongType(key, v, $"an array of {typeof(T).Name}");
        return true;
    }

    private ModelFormatException Missing(string key, string expected) =>
        new(Path, $"metadata key '{key}' ({expected}) is missing");

    private ModelFormatException WrongType(string key, object value, string expected) =>
        new(Path, $"metadata key '{key}' is {Describe(value)}, expected {expected}");

    private static string Describe(object value) => value is Array a
        ? $"an array of {a.GetType().GetElementType()!.Name}"
        : $"a {value.GetType().Name}";
}
