using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Activation rows quantized as llama.cpp does before an integer dot product: per block of 32
/// values, d = amax / 127 (rounded through fp16, as block_q8_0 stores it), q = round(x * 127 / amax).
/// <see cref="Sums"/> holds each block's sum of q (for weight formats with an offset or a minimum).
/// </summary>
internal readonly unsafe struct Q8Activations
{
    public const int Block = 32;

    public Q8Activations(sbyte* q, float* d, int* sums, int cols, sbyte* negated = null)
    {
        N = negated;
        Q = q;
        D = d;
        Sums = sums;
        Cols = cols;
    }

    public sbyte* Q { get; }

    /// <summary>−q, row-major like <see cref="Q"/> (or null): the AVX-512 kernels give an activation a weight's sign by
    /// choosing between q and −q per byte (AVX-512 has no <c>psignb</c>), one blend instead of a negation and a blend.</summary>
    public sbyte* N { get; }
    public float* D { get; }
    public int* Sums { get; }

    public int Cols { get; }
    public int Blocks => Cols / Block;

    /// <summary>Bytes of scratch needed for <paramref name="batch"/> rows of <paramref name="cols"/> values.</summary>
    public static int ScratchBytes(int cols, int batch) => batch * (2 * cols + cols / Block * 8);

    /// <summary>Lays the arrays out in <paramref name="scratch"/>.</summary>
    public static Q8Activations In(byte* scratch, int cols, int batch)
    {
        int blocks = cols / Block * batch;
        // −q only where the AVX-512 kernels read it: elsewhere quantizing skips the store.
        return new Q8Activations((sbyte*)scratch, (float*)(scratch + (long)cols * batch), (int*)(scratch + (long)cols * batch + blocks * 4L), cols,
            System.Runtime.Intrinsics.X86.Avx512BW.IsSupported ? (sbyte*)(scratch + (long)cols * batch + blocks * 8L) : null);
    }

    public sbyte* RowQ(int b) => Q + (long)b * Cols;

    /// <summary>Row <paramref name="b"/> of <see cref="N"/>.</summary>
    public sbyte* RowN(int b) => N + (long)b * Cols;

    public float* RowD(int b) => D + (long)b * Blocks;
    public int* RowSums(int b) => Sums + (long)b * Blocks;

    /// <summary>Quantizes rows of x (vectorized); gives exactly the values of <see cref="QuantizeReference"/>.</summary>
    public void Quantize(float* x, int batch)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            QuantizeReference(x, batch);
            return;
        }

        int blocks = Blocks * batch;
        for (int k = 0; k < blocks; k++)
        {
            float* src = x + (long)k * Block;
            Vector256<float> v0 = Vector256.Load(src), v1 = Vector256.Load(src + 8), v2 = Vector256.Load(src + 16), v3 = Vector256.Load(src + 24);
            Vector256<float> m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            Vector128<float> m4 = Vector128.Max(m.GetLower(), m.GetUpper());
            float amax = MathF.Max(MathF.Max(m4[0], m4[1]), MathF.Max(m4[2], m4[3]));
            float id = amax != 0 ? 127f / amax : 0f;
            D[k] = (float)(Half)(amax / 127f);
            var vid = Vector256.Create(id);
            Vector256<int> i0 = Vector256.ConvertToInt32(Vector256.Round(v0 * vid));
            Vector256<int> i1 = Vector256.ConvertToInt32(Vector256.Round(v1 * vid));
            Vector256<int> i2 = Vector256.ConvertToInt32(Vector256.Round(v2 * vid));
            Vector256<int> i3 = Vector256.ConvertToInt32(Vector256.Round(v3 * vid));
            Sums[k] = Vector256.Sum(i0 + i1 + i2 + i3);
            Vector256<sbyte> q = Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3));
            q.Store(Q + (long)k * Block);
            if (N is not null)
            {
                (Vector256<sbyte>.Zero - q).Store(N + (long)k * Block);
            }
        }
    }

    /// <summary>Scalar reference quantizer.</summary>
    public void QuantizeReference(float* x, int batch)
    {
        int blocks = Blocks * batch;
        for (int k = 0; k < blocks; k++)
        {
            float* src = x + (long)k * Block;
            float amax = 0;
            for (int j = 0; j < Block; j++)
            {
                amax = MathF.Max(amax, MathF.Abs(src[j]));
            }

            float id = amax != 0 ? 127f / amax : 0f;
            D[k] = (float)(Half)(amax / 127f);
            int sum = 0;
            for (int j = 0; j < Block; j++)
            {
                int q = (int)MathF.Round(src[j] * id);
                Q[(long)k * Block + j] = (sbyte)q;
                if (N is not null)
                {
                    N[(long)k * Block + j] = (sbyte)-q;
                }

                sum += q;
            }

            Sums[k] = sum;
        }
    }
}
