using System.Buffers.Binary;
using System.Text;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Llm.ModelFiles;

public sealed class GgufWriterTests
{
    [Fact]
    public void WriteHeader_OneKeyOneTensor_ExactBytes()
    {
        using var stream = new MemoryStream();
        var gguf = new GgufWriter(stream);
        gguf.Add("a", 7u);
        gguf.AddTensor("t", GgmlType.F32, [2]);

        gguf.WriteHeader();
        gguf.WriteTensorData(new byte[8] { 1, 2, 3, 4, 5, 6, 7, 8 });
        gguf.Finish();

        byte[] file = stream.ToArray();
        var expected = new List<byte>();
        expected.AddRange("GGUF"u8.ToArray());
        expected.AddRange(BitConverter.GetBytes(3u));
        expected.AddRange(BitConverter.GetBytes(1UL));
        expected.AddRange(BitConverter.GetBytes(1UL));
        expected.AddRange(BitConverter.GetBytes(1UL));
        expected.Add((byte)'a');
        expected.AddRange(BitConverter.GetBytes(4u)); // uint32
        expected.AddRange(BitConverter.GetBytes(7u));
        expected.AddRange(BitConverter.GetBytes(1UL));
        expected.Add((byte)'t');
        expected.AddRange(BitConverter.GetBytes(1u));
        expected.AddRange(BitConverter.GetBytes(2UL));
        expected.AddRange(BitConverter.GetBytes(0u)); // F32
        expected.AddRange(BitConverter.GetBytes(0UL));
        while (expected.Count % 32 != 0)
        {
            expected.Add(0);
        }

        expected.AddRange(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 });
        while (expected.Count % 32 != 0)
        {
            expected.Add(0);
        }

        Assert.Equal(expected.ToArray(), file);
        Assert.Equal(file.Length, gguf.BytesWritten);
    }

    [Fact]
    public void AddTensor_SeveralTensors_OffsetsAlignedAndDataPadded()
    {
        using var stream = new MemoryStream();
        var gguf = new GgufWriter(stream);
        gguf.Add("s", "\u2581x");
        gguf.Add("arr", new[] { "a", "bc" });
        gguf.AddTensor("q", GgmlType.Q8_0, [32, 3]);
        gguf.AddTensor("n", GgmlType.F32, [5]);
        gguf.AddTensor("h", GgmlType.F16, [3, 1]);
        gguf.WriteHeader();
        long dataStart = stream.Length;

        gguf.WriteTensorData(new byte[50]);
        gguf.WriteTensorData(Enumerable.Repeat((byte)0xAA, 52).ToArray());
        gguf.WriteTensorData(Enumerable.Repeat((byte)0xBB, 20).ToArray());
        gguf.WriteTensorData(Enumerable.Repeat((byte)0xCC, 6).ToArray());
        gguf.Finish();

        byte[] file = stream.ToArray();
        Assert.Equal(0, dataStart % 32);
        Assert.Equal(0xAA, file[dataStart + 101]);
        Assert.Equal(0, file[dataStart + 102]); // padding after the 102-byte Q8_0 tensor
        Assert.Equal(0xBB, file[dataStart + 128]); // n starts at offset 128
        Assert.Equal(0xCC, file[dataStart + 160]); // h at 160
        Assert.Equal(192, file.Length - dataStart);
        string header = Encoding.UTF8.GetString(file, 0, (int)dataStart);
        Assert.Contains("\u2581x", header, StringComparison.Ordinal);
        Assert.Equal(3UL, BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(8)));
    }

    [Fact]
    public void WriteTensorData_TooManyBytesOrMissing_Throws()
    {
        using var stream = new MemoryStream();
        var gguf = new GgufWriter(stream);
        gguf.AddTensor("t", GgmlType.F32, [2]);
        Assert.Throws<InvalidOperationException>(() => gguf.WriteTensorData(new byte[8]));
        gguf.WriteHeader();
        Assert.Throws<InvalidOperationException>(() => gguf.WriteTensorData(new byte[9]));
        Assert.Throws<InvalidOperationException>(() => gguf.Finish());
        Assert.Throws<InvalidOperationException>(() => gguf.Add("late", 1u));
    }

    [Fact]
    public void AddTensor_InnerDimNotWholeBlocksOrDuplicate_Throws()
    {
        var gguf = new GgufWriter(Stream.Null);
        Assert.Throws<ArgumentException>(() => gguf.AddTensor("q", GgmlType.Q4_0, [48, 2]));
        gguf.AddTensor("a", GgmlType.F32, [1]);
        Assert.Throws<ArgumentException>(() => gguf.AddTensor("a", GgmlType.F32, [1]));
        gguf.Add("k", 1);
        Assert.Throws<ArgumentException>(() => gguf.Add("k", 2));
    }
}
