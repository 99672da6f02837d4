using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.ModelFiles;

public class GgufFileTests
{
    private static string Stories => SharedData.Path("oracle", "stories260K.gguf");

    [SharedFact]
    public void Read_Stories260K_ParsesHeaderMetadataAndTensors()
    {
        GgufFile f = GgufFile.Read(Stories);

        Assert.Equal("llama", f.Architecture);
        Assert.InRange(f.Version, 2u, 3u);
        Assert.Equal(64u, f.GetUInt("llama.embedding_length"));
        Assert.Equal(5u, f.GetUInt("llama.block_count"));
        Assert.Equal(8u, f.GetUInt("llama.attention.head_count"));
        Assert.Equal(4u, f.GetUInt("llama.attention.head_count_kv"));
        string[] tokens = f.GetArray<string>("tokenizer.ggml.tokens");
        Assert.Equal(512, tokens.Length);
        Assert.Equal(512, f.GetArray<float>("tokenizer.ggml.scores").Length);
        Assert.Equal(32, f.Alignment);
        Assert.Equal(0, f.DataOffset % f.Alignment);
        GgufTensorInfo embd = f.TensorsByName["token_embd.weight"];
        Assert.Equal(GgmlType.F32, embd.Type);
        Assert.Equal([64L, 512L], embd.Dims);
        Assert.Equal(64L * 512 * 4, embd.ByteSize);
        Assert.All(f.Tensors, t => Assert.True(f.DataOffset + t.Offset + t.ByteSize <= f.FileLength));
    }

    [Fact]
    public void Read_EveryValueType_BoxesAsItsClrType()
    {
        using var dir = new TempDir();
        var g = new GgufTestWriter()
            .Add("u8", GgufValueType.UInt8, w => w.Write((byte)200))
            .Add("i8", GgufValueType.Int8, w => w.Write((sbyte)-5))
            .Add("u16", GgufValueType.UInt16, w => w.Write((ushort)60000))
            .Add("i16", GgufValueType.Int16, w => w.Write((short)-300))
            .Add("u32", GgufValueType.UInt32, w => w.Write(4_000_000_000u))
            .Add("i32", GgufValueType.Int32, w => w.Write(-7))
            .Add("f32", GgufValueType.Float32, w => w.Write(1.5f))
            .Add("b", GgufValueType.Bool, w => w.Write((byte)1))
            .String("s", "héllo")
            .Add("u64", GgufValueType.UInt64, w => w.Write(ulong.MaxValue))
            .Add("i64", GgufValueType.Int64, w => w.Write(-9L))
            .Add("f64", GgufValueType.Float64, w => w.Write(2.25))
            .Add("ai32", GgufValueType.Array, w => { w.Write((uint)GgufValueType.Int32); w.Write(2UL); w.Write(-1); w.Write(3); })
            .Add("af64", GgufValueType.Array, w => { w.Write((uint)GgufValueType.Float64); w.Write(1UL); w.Write(0.5); })
            .Add("ab", GgufValueType.Array, w => { w.Write((uint)GgufValueType.Bool); w.Write(2UL); w.Write((byte)0); w.Write((byte)1); })
            .Strings("as", ["x", "", "yz"]);
        GgufFile f = GgufFile.Read(g.WriteTo(dir.Path));

        Assert.Equal((byte)200, f.Metadata["u8"]);
        Assert.Equal((sbyte)-5, f.Metadata["i8"]);
        Assert.Equal((ushort)60000, f.Metadata["u16"]);
        Assert.Equal((short)-300, f.Metadata["i16"]);
        Assert.Equal(4_000_000_000u, f.Metadata["u32"]);
        Assert.Equal(-7, f.Metadata["i32"]);
        Assert.Equal(1.5f, f.Metadata["f32"]);
        Assert.Equal(true, f.Metadata["b"]);
        Assert.Equal("héllo", f.GetString("s"));
        Assert.Equal(ulong.MaxValue, f.Metadata["u64"]);
        Assert.Equal(-9L, f.Metadata["i64"]);
        Assert.Equal(2.25, f.Metadata["f64"]);
        Assert.Equal(2.25f, f.GetFloat("f64"));
        Assert.Equal([-1, 3], f.GetArray<int>("ai32"));
        Assert.Equal([0.5], f.GetArray<double>("af64"));
        Assert.Equal([false, true], f.GetArray<bool>("ab"));
        Assert.Equal(["x", "", "yz"], f.GetArray<string>("as"));
        Assert.Equal(200u, f.GetUInt("u8"));
        Assert.Empty(f.Tensors);
    }

    [Fact]
    public void GetTyped_MissingOrWrongType_ThrowsNamingTheKey()
    {
        using var dir = new TempDir();
        GgufFile f = GgufFile.Read(new GgufTestWriter().String("s", "x").Add("neg", GgufValueType.Int32, w => w.Write(-1)).WriteTo(dir.Path));

        Assert.Contains("'missing' (a string) is missing", Assert.Throws<ModelFormatException>(() => f.GetString("missing")).Problem);
        Assert.Contains("'s' is a String, expected an unsigned integer", Assert.Throws<ModelFormatException>(() => f.GetUInt("s")).Problem);
        Assert.Contains("out of range", Assert.Throws<ModelFormatException>(() => f.GetUInt("neg")).Problem);
        Assert.Contains("expected an array of Single", Assert.Throws<ModelFormatException>(() => f.GetArray<float>("s")).Problem);
    }

    [Fact]
    public void Read_WrongMagic_Throws()
    {
        using var dir = new TempDir();
        string path = dir.File("x.gguf");
        File.WriteAllBytes(path, "GGMLxxxxxxxxxxxxxxxxxxxxxxxx"u8.ToArray());

        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Read(path));
        Assert.Contains("not a GGUF file", e.Problem);
        Assert.Equal(path, e.Path);
    }

    [Fact]
    public void Read_Version1_ThrowsClearError()
    {
        using var dir = new TempDir();
        string path = new GgufTestWriter { Version = 1 }.WriteTo(dir.Path);

        Assert.Contains("version 1 is not supported", Assert.Throws<ModelFormatException>(() => GgufFile.Read(path)).Problem);
    }

    [Fact]
    public void Read_Version2_Parses()
    {
        using var dir = new TempDir();
        Assert.Equal(2u, GgufFile.Read(new GgufTestWriter { Version = 2 }.String("a", "b").WriteTo(dir.Path)).Version);
    }

    [SharedFact]
    public void Read_EveryTruncationOfTheHeader_ThrowsModelFormatException()
    {
        using var dir = new TempDir();
        byte[] bytes = File.ReadAllBytes(Stories);
        long dataOffset = GgufFile.Read(Stories).DataOffset;
        string path = dir.File("t.gguf");
        var rng = new Random(1);
        var cuts = new List<int> { 0, 3, 4, 8, 16, 23, 24, (int)dataOffset - 1, (int)dataOffset, bytes.Length - 1 };
        for (int i = 0; i < 40; i++)
        {
            cuts.Add(rng.Next(1, bytes.Length - 1));
        }

        foreach (int cut in cuts)
        {
            File.WriteAllBytes(path, bytes.AsSpan(0, cut).ToArray());
            var e = Assert.Throws<ModelFormatException>(() => GgufFile.Read(path));
            Assert.DoesNotContain('\n', e.Problem);
        }
    }

    [Fact]
    public void Read_StringLengthBeyondFile_Throws()
    {
        using var dir = new TempDir();
        string path = new GgufTestWriter().Add("s", GgufValueType.String, w => { w.Write(1UL << 40); w.Write((byte)'a'); }).WriteTo(dir.Path);

        Assert.Contains("beyond the end of the file", Assert.Throws<ModelFormatException>(() => GgufFile.Read(path)).Problem);
    }

    [Fact]
    public void Read_AbsurdCounts_Throw()
    {
        using var dir = new TempDir();
        string kv = dir.File("kv.gguf");
        byte[] b = new GgufTestWriter().String("a", "b").ToBytes();
        BitConverter.TryWriteBytes(b.AsSpan(16), 1UL << 50);
        File.WriteAllBytes(kv, b);
        Assert.Contains("metadata count", Assert.Throws<ModelFormatException>(() => GgufFile.Read(kv)).Problem);

        string arr = new GgufTestWriter().Add("a", GgufValueType.Array, w => { w.Write((uint)GgufValueType.UInt32); w.Write(1UL << 40); }).WriteTo(dir.Path, "arr.gguf");
        Assert.Contains("array length of 'a'", Assert.Throws<ModelFormatException>(() => GgufFile.Read(arr)).Problem);
    }

    [Fact]
    public void Read_UnknownValueType_Throws()
    {
        using var dir = new TempDir();
        string path = new GgufTestWriter().Add("weird", (GgufValueType)77, w => w.Write(0UL)).WriteTo(dir.Path);

        Assert.Contains("'weird' has unknown value type 77", Assert.Throws<ModelFormatException>(() => GgufFile.Read(path)).Problem);
    }

    [Fact]
    public void Read_TensorDataBeyondEndOfFile_Throws()
    {
        using var dir = new TempDir();
        byte[] b = new GgufTestWriter().F32("t", 1f, 64, 4).ToBytes();
        string path = dir.File("t.gguf");
        File.WriteAllBytes(path, b.AsSpan(0, b.Length - 4).ToArray());

        Assert.Contains("tensor 't' data", Assert.Throws<ModelFormatException>(() => GgufFile.Read(path)).Problem);
    }

    [Fact]
    public void Read_MissingFile_Throws()
    {
        Assert.Contains("not found", Assert.Throws<ModelFormatException>(() => GgufFile.Read("/nonexistent/x.gguf")).Problem);
    }

    [Fact]
    public void Read_150kTokenVocabulary_ReadsEveryToken()
    {
        using var dir = new TempDir();
        string[] tokens = Enumerable.Range(0, 150_000).Select(i => "tok" + i).ToArray();
        float[] scores = new float[tokens.Length];
        string path = new GgufTestWriter()
            .Strings("tokenizer.ggml.tokens", tokens)
            .Add("tokenizer.ggml.scores", GgufValueType.Array, w => { w.Write((uint)GgufValueType.Float32); w.Write((ulong)scores.Length); foreach (float s in scores) { w.Write(s); } })
            .WriteTo(dir.Path);
        GgufFile f = GgufFile.Read(path);

        Assert.Equal(tokens, f.GetArray<string>("tokenizer.ggml.tokens"));
    }
}
