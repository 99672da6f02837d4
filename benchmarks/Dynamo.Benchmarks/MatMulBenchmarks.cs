using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Benchmarks;

/// <summary>
/// Matrix-vector (decode) and batch-16 (prefill-like) products per weight type and shape.
/// Weight GB/s for a matvec = bytes of the matrix / mean time.
/// Run: dotnet run -c Release --project benchmarks/Dynamo.Benchmarks -- --filter '*MatMul*'
/// </summary>
[MemoryDiagnoser]
public unsafe class MatMulBenchmarks
{
    private Tensor _w = null!;
    private byte* _data;
    private float[] _x = [];
    private float[] _y = [];

    [Params(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.F16, GgmlType.F32)]
    public GgmlType Type { get; set; }

    [Params("2048x2048", "5632x2048")]
    public string Shape { get; set; } = "2048x2048";

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        string[] parts = Shape.Split('x');
        int rows = int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
        int cols = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        long bytes = GgmlTypeInfo.ByteSize(Type, (long)rows * cols);
        _data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var rng = new Random(1);
        var span = new Span<byte>(_data, (int)bytes);
        rng.NextBytes(span);
        int blockBytes = GgmlTypeInfo.TypeSize(Type)!.Value;
        for (long i = 0; i < bytes; i += blockBytes)
        {
            // A small valid fp16 in every block scale or every F16 value; F32 values made finite.
            if (Type == GgmlType.F32)
            {
                BitConverter.TryWriteBytes(span[(int)i..], rng.NextSingle());
            }
            else
            {
                BitConverter.TryWriteBytes(span[(int)i..], (Half)(rng.NextSingle() * 0.01f));
            }
        }

        _w = new Tensor("bench", Type, [cols, rows], _data, bytes);
        _x = new float[16 * cols];
        for (int i = 0; i < _x.Length; i++)
        {
            _x[i] = rng.NextSingle() - 0.5f;
        }

        _y = new float[16 * rows];
        KernelThreads.Count = Threads;
    }

    [GlobalCleanup]
    public void Cleanup() => NativeMemory.AlignedFree(_data);

    [Benchmark]
    public void MatVec() => MatMul.Multiply(_w, _x, _y, 1);

    [Benchmark]
    public void Batch16() => MatMul.Multiply(_w, _x, _y, 16);
}
