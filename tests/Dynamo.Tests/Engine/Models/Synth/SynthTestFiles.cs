using System.Buffers.Binary;
using System.Text;

namespace Dynamo.Tests.Engine.Models.Synth;

/// <summary>Minimal GGUF and safetensors header readers for the writer tests (the real reader lives elsewhere).</summary>
internal static class SynthTestFiles
{
    public sealed record GgufTensor(string Name, uint[] Dims, uint Type, ulong Offset);

    public sealed record Gguf(uint Version, Dictionary<string, object> Metadata, List<GgufTensor> Tensors, long DataStart);

    public static Gguf ReadGguf(byte[] file)
    {
        int o = 0;
        uint U32() { uint v = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(o)); o += 4; return v; }
        ulong U64() { ulong v = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(o)); o += 8; return v; }
        string Str() { int n = (int)U64(); string s = Encoding.UTF8.GetString(file, o, n); o += n; return s; }
        object Value(uint type)
        {
            switch (type)
            {
                case 4: return U32();
                case 5: return (int)U32();
                case 6: return BitConverter.UInt32BitsToSingle(U32());
                case 7: return file[o++] != 0;
                case 8: return Str();
                case 10: return U64();
                case 9:
                    uint et = U32();
                    int n = (int)U64();
                    var list = new List<object>(n);
                    for (int i = 0; i < n; i++)
                    {
                        list.Add(Value(et));
                    }

                    return list;
                default: throw new InvalidDataException($"gguf type {type} not handled by the test reader");
            }
        }

        Assert.Equal("GGUF", Encoding.ASCII.GetString(file, 0, 4));
        o = 4;
        uint version = U32();
        int tensorCount = (int)U64();
        int kvCount = (int)U64();
        var metadata = new Dictionary<string, object>();
        for (int i = 0; i < kvCount; i++)
        {
            string key = Str();
            metadata[key] = Value(U32());
        }

        var tensors = new List<GgufTensor>();
        for (int i = 0; i < tensorCount; i++)
        {
            string name = Str();
            uint nd = U32();
            var dims = new uint[nd];
            for (int d = 0; d < nd; d++)
            {
                dims[d] = (uint)U64();
            }

            tensors.Add(new GgufTensor(name, dims, U32(), U64()));
        }

        long dataStart = (o + 31) / 32 * 32;
        return new Gguf(version, metadata, tensors, dataStart);
    }

    public static (long DataStart, System.Text.Json.JsonElement Header) ReadSafetensors(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var doc = System.Text.Json.JsonDocument.Parse(file.AsMemory(8, (int)n));
        return (8 + n, doc.RootElement);
    }

    public static string TempPath(string name) =>
        Path.Combine(Path.GetTempPath(), "dynamo-synth-tests", Guid.NewGuid().ToString("N"), name);
}
