using System.Runtime.CompilerServices;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary>Weight tensors over pinned arrays for kernel tests.</summary>
internal static unsafe class TestTensors
{
    private static readonly List<byte[]> Alive = [];

    /// <summary>A tensor over <paramref name="bytes"/> (copied into a pinned array kept alive for the test run).</summary>
    public static Tensor Of(GgmlType type, int rows, int cols, byte[] bytes)
    {
        byte[] pinned = GC.AllocateArray<byte>(Math.Max(1, bytes.Length), pinned: true);
        bytes.CopyTo(pinned, 0);
        lock (Alive)
        {
            Alive.Add(pinned);
        }

        return new Tensor($"test.{type}", type, [cols, rows], (byte*)Unsafe.AsPointer(ref pinned[0]), bytes.Length);
    }

    /// <summary>Random weights of a type: random quant bytes with small, valid fp16 scales.</summary>
    public static Tensor Random(GgmlType type, int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        long size = GgmlTypeInfo.ByteSize(type, (long)rows * cols);
        var b = new byte[size];
        rng.NextBytes(b);
        int blockBytes = GgmlTypeInfo.TypeSize(type)!.Value;
        void Half(long at, float lo, float hi) =>
            BitConverter.TryWriteBytes(b.AsSpan((int)at), (System.Half)(lo + (hi - lo) * rng.NextSingle()));
        switch (type)
        {
            case GgmlType.F32:
                for (long i = 0; i < size; i += 4)
                {
                    BitConverter.TryWriteBytes(b.AsSpan((int)i), rng.NextSingle() * 2 - 1);
                }

                break;
            case GgmlType.F16:
                for (long i = 0; i < size; i += 2)
                {
                    Half(i, -1, 1);
                }

                break;
            case GgmlType.BF16:
                for (long i = 0; i < size; i += 2)
                {
                    BitConverter.TryWriteBytes(b.AsSpan((int)i), (ushort)(BitConverter.SingleToInt32Bits(rng.NextSingle() * 2 - 1) >> 16));
                }

                break;
            case GgmlType.Q8_0:
            case GgmlType.Q4_0:
                for (long k = 0; k < size; k += blockBytes)
                {
                    Half(k, -0.05f, 0.05f);
                }

                break;
            case GgmlType.Q4_K:
                for (long k = 0; k < size; k += blockBytes)
                {
                    Half(k, 0, 0.01f);
                    Half(k + 2, 0, 0.01f);
                }

                break;
            case GgmlType.Q6_K:
                for (long k = 0; k < size; k += blockBytes)
                {
                    Half(k + 208, -0.005f, 0.005f);
                }

                break;
        }

        return Of(type, rows, cols, b);
    }

    public static float[] RandomFloats(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (rng.NextSingle() * 2 - 1) * scale;
        }

        return x;
    }
}
