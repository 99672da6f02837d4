using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Register-tiled integer products over <see cref="PackedQuant"/> weights: 16 weight rows (one per 32-bit lane) by
/// four activation rows per tile, or by one (decode, tails). Every output value has one reduction order, the same in
/// every path (AVX-512, AVX2, portable Vector128 for ARM64, scalar) and every tile:
/// <c>acc = 0; for each block k in order: acc = fma((float)dot_k, d_w,k * d_x,k, acc)</c>, where dot_k is the exact
/// integer dot of the block (Q4_0: Σ(n − 8)·q, folded as Σn·q − 8·Σq) and the scale product one float multiply.
/// Integer sums are exact whatever their order, so a row's result does not depend on the tile, the batch, the thread
/// or the instruction set that computed it (<see cref="Reference"/> is the definition).
/// Exactness bounds: a Q8_0 pair sum |w|·(±q) ≤ 2·128·127 &lt; 2^15; a Q4_0 int16 lane adds eight pair sums of
/// nibbles (≤ 15) by |q| ≤ 127: 8·2·15·127 = 30,480 &lt; 2^15; |dot_k| ≤ 32·128·127 &lt; 2^24, exact as a float.
/// </summary>
internal static unsafe class PackedQuantKernel
{
    /// <summary>
    /// How far ahead of the block in work the x86 kernels ask for weight lines (software prefetch). A decode step streams
    /// every weight once; the hardware prefetchers stop at each 4 KiB page, and under two threads' load the one-row tile
    /// waited on memory: 1b1 Q4_0 decode went from 65 to 77 tok/s (2 threads, Zen 5), 47 to 55 on one thread, and
    /// 16-sequence decode of 110m Q8_0 from about 1,140 to 1,300-1,440. About bandwidth x latency of one core (25 GB/s x 150 ns).
    /// </summary>
    private const int PrefetchAhead = 4096;

    /// <summary>
    /// dst[b·stride + r] = row r of one group of a <see cref="PackedQuant"/> times activation row b, for the group's
    /// <paramref name="valid"/> real rows and activation rows <paramref name="b0"/> .. b0 + count − 1: the group's first
    /// block of quants <paramref name="wg"/> and its scales <paramref name="sg"/>; <paramref name="dst"/> is the group's
    /// first output column.
    /// </summary>
    public static void Group(byte* wg, ushort* sg, bool q8, int blocks, int valid, in Q8Activations a, int b0, int count, float* dst, int stride)
    {
        int b = b0, end = b0 + count;
        float* tile = stackalloc float[4 * PackedQuant.GroupRows];
        if (q8 && AvxVnni.IsSupported && Fma.IsSupported && end - b >= 2)
        {
            // Q8_0 tiles of two to four rows with AVX-VNNI where the CPU has it (Zen 5; not Zen 4), ahead of AVX-512:
            // 1b1 Q8_0 pp512 210 -> 272 tok/s and 16-sequence decode of 110m Q8_0 1,320 -> 1,600 (Zen 5, 2 threads).
            // A single row (decode) stays on the one-row tile below: it waits on memory, not on the products.
            float* fs = FloatScales(sg, blocks);
            for (; b + 2 <= end; b += 4)
            {
                int last = Math.Min(b + 3, end - 1);
                Q8_0x4Vnni(wg, fs, blocks, a, b, last, tile);
                Store(tile, last - b + 1, valid, dst + (long)b * stride, stride);
            }
        }

        if (Avx512BW.IsSupported)
        {
            for (; b + 4 <= end; b += 4)
            {
                if (q8)
                {
                    Q8_0x4Avx512(wg, sg, blocks, a, b, tile);
                }
                else
                {
                    Q4_0x4Avx512(wg, sg, blocks, a, b, tile);
                }

                Store(tile, 4, valid, dst + (long)b * stride, stride);
            }

            for (; b < end; b++)
            {
                if (q8)
                {
                    Q8_0x1Avx512(wg, sg, blocks, a, b, tile);
                }
                else
                {
                    Q4_0x1Avx512(wg, sg, blocks, a, b, tile);
                }

                Store(tile, 1, valid, dst + (long)b * stride, stride);
            }

            return;
        }

        if (IntDot.IsSupported)
        {
            // The four-row tile runs over the group twice per four rows (one half each): its scales converted once here.
            float* fs = end - b >= 2 ? FloatScales(sg, blocks) : null;
            for (; b + 4 <= end; b += 4)
            {
                for (int half = 0; half < 2; half++)
                {
                    if (q8)
                    {
                        Q8_0x4Avx2(wg, fs, half, blocks, a, b, b + 3, tile + half * 8);
                    }
                    else
                    {
                        Q4_0x4Avx2(wg, fs, half, blocks, a, b, b + 3, tile + half * 8);
                    }
                }

                Store(tile, 4, valid, dst + (long)b * stride, stride);
            }

            if (end - b >= 2)
            {
                // Two or three rows left: the four-row tile with the last row repeated (each row's result is the bits a
                // tile of one gives), at two to three times the speed per row of the one-row tile.
                for (int half = 0; half < 2; half++)
                {
                    if (q8)
                    {
                        Q8_0x4Avx2(wg, fs, half, blocks, a, b, end - 1, tile + half * 8);
                    }
                    else
                    {
                        Q4_0x4Avx2(wg, fs, half, blocks, a, b, end - 1, tile + half * 8);
                    }
                }

                Store(tile, end - b, valid, dst + (long)b * stride, stride);
                b = end;
            }

            for (; b < end; b++)
            {
                if (q8)
                {
                    Q8_0x1Avx2(wg, sg, blocks, a, b, tile);
                }
                else
                {
                    Q4_0x1Avx2(wg, sg, blocks, a, b, tile);
                }

                Store(tile, 1, valid, dst + (long)b * stride, stride);
            }

            return;
        }

        if (Vector128.IsHardwareAccelerated)
        {
            for (; b < end; b++)
            {
                for (int quad = 0; quad < 4; quad++)
                {
                    Vector128x1(wg, sg, q8, quad, blocks, a, b, tile + quad * 4);
                }

                Store(tile, 1, valid, dst + (long)b * stride, stride);
            }

            return;
        }

        for (; b < end; b++)
        {
            for (int r = 0; r < valid; r++)
            {
                dst[(long)b * stride + r] = Reference(wg, sg, q8, blocks, r, a, b);
            }
        }
    }

    /// <summary>The definition of every path's result: row <paramref name="r"/> of the group, one output value, scalar, in the order above.</summary>
    private static float Reference(byte* wg, ushort* sg, bool q8, int blocks, int r, in Q8Activations a, int b)
    {
        int blockBytes = PackedQuant.BytesPerBlock(q8 ? GgmlType.Q8_0 : GgmlType.Q4_0);
        sbyte* q = a.RowQ(b);
        float* d = a.RowD(b);
        float acc = 0;
        for (int k = 0; k < blocks; k++)
        {
            byte* quants = wg + (long)k * blockBytes + r * 4;
            sbyte* x = q + k * 32;
            int dot = 0;
            if (q8)
            {
                for (int s = 0; s < 8; s++)
                {
                    for (int i = 0; i < 4; i++)
                    {
                        dot += ((sbyte*)quants)[s * 64 + i] * x[4 * s + i];
                    }
                }
            }
            else
            {
                for (int s = 0; s < 4; s++)
                {
                    for (int i = 0; i < 4; i++)
                    {
                        byte v = quants[s * 64 + i];
                        dot += ((v & 0xF) - 8) * x[4 * s + i] + ((v >> 4) - 8) * x[16 + 4 * s + i];
                    }
                }
            }

            acc = MathF.FusedMultiplyAdd(dot, HalfConvert.F16(sg[k * PackedQuant.GroupRows + r]) * d[k], acc);
        }

        return acc;
    }

    /// <summary>Asks for the four lines of a Q4_0 block <see cref="PrefetchAhead"/> bytes on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch256(byte* block)
    {
        Sse.Prefetch0(block + PrefetchAhead);
        Sse.Prefetch0(block + PrefetchAhead + 64);
        Sse.Prefetch0(block + PrefetchAhead + 128);
        Sse.Prefetch0(block + PrefetchAhead + 192);
    }

    private static void Store(float* tile, int tokens, int valid, float* y, int stride)
    {
        for (int t = 0; t < tokens; t++)
        {
            new ReadOnlySpan<float>(tile + t * PackedQuant.GroupRows, valid).CopyTo(new Span<float>(y + (long)t * stride, valid));
        }
    }

    // ---- The scales: the file's fp16 values converted exactly (.NET exposes no vcvtph2ps) ----

    /// <summary>
    /// Sixteen fp16 scales as floats. All normal (the usual case): the exponent and mantissa moved into place and the
    /// exponent re-biased by 127 − 15 = 112 with integer operations; otherwise the general exact conversion.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Scales16(ushort* s)
    {
        Vector512<uint> h = Avx512F.ConvertToVector512UInt32(Vector256.Load(s));
        if (Vector512.LessThanAll((h & Vector512.Create(0x7C00u)) - Vector512.Create(0x0400u), Vector512.Create(0x7800u)))
        {
            return ((((h & Vector512.Create(0x7FFFu)) << 13) + Vector512.Create(112u << 23)) | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
        }

        return HalfConvert.Convert(h);
    }

    /// <summary>A group's fp16 scales (<paramref name="blocks"/> x 16) as floats, in this thread's buffer (valid until its next call).</summary>
    private static float* FloatScales(ushort* sg, int blocks)
    {
        int n = blocks * PackedQuant.GroupRows;
        float[] buffer = _floatScales is { } f && f.Length >= n ? f : _floatScales = GC.AllocateUninitializedArray<float>(Math.Max(n, 4096), pinned: true);
        float* fs = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        for (int i = 0; i < n; i += 8)
        {
            Scales8(sg + i).Store(fs + i);
        }

        return fs;
    }

    [ThreadStatic]
    private static float[]? _floatScales;

    /// <summary>Eight fp16 scales as floats (as <see cref="Scales16"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales8(ushort* s)
    {
        Vector256<uint> h = Avx2.ConvertToVector256Int32(Vector128.Load(s)).AsUInt32();
        if (Vector256.LessThanAll((h & Vector256.Create(0x7C00u)) - Vector256.Create(0x0400u), Vector256.Create(0x7800u)))
        {
            return ((((h & Vector256.Create(0x7FFFu)) << 13) + Vector256.Create(112u << 23)) | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
        }

        return HalfConvert.Convert(h);
    }

    /// <summary>Four fp16 scales as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Scales4(ushort* s) =>
        Vector128.Create(HalfConvert.F16(s[0]), HalfConvert.F16(s[1]), HalfConvert.F16(s[2]), HalfConvert.F16(s[3]));

    // ---- AVX-512 (Avx512BW): a vector is the 16 rows of a group ----

    /// <summary>Adds |w|·(x with w's sign), four bytes per lane, to <paramref name="acc"/>: the Q8_0 step of one slice
    /// (<paramref name="x4"/> and <paramref name="n4"/>: four activation bytes and their negations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q8Step(Vector512<int> acc, Vector512<byte> magnitude, Vector512<sbyte> negative, int x4, int n4)
    {
        Vector512<sbyte> signed = Vector512.ConditionalSelect(negative, Vector512.Create(n4).AsSByte(), Vector512.Create(x4).AsSByte());
        return acc + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, signed), Vector512.Create((short)1));
    }

    private static void Q8_0x4Avx512(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b + 1), q2 = a.RowQ(b + 2), q3 = a.RowQ(b + 3);
        sbyte* n0 = a.RowN(b), n1 = a.RowN(b + 1), n2 = a.RowN(b + 2), n3 = a.RowN(b + 3);
        float* d0 = a.RowD(b), d1 = a.RowD(b + 1), d2 = a.RowD(b + 2), d3 = a.RowD(b + 3);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int k = 0; k < blocks; k++, w += 512, sc += PackedQuant.GroupRows)
        {
            Vector512<int> i0 = default, i1 = default, i2 = default, i3 = default;
            int o = k * 32;
            for (int s = 0; s < 8; s++)
            {
                Sse.Prefetch0(w + s * 64 + PrefetchAhead);

                Vector512<sbyte> v = Vector512.Load((sbyte*)w + s * 64);
                Vector512<byte> m = Avx512BW.Abs(v);
                Vector512<sbyte> n = Vector512.LessThan(v, Vector512<sbyte>.Zero);
                int at = o + 4 * s;
                i0 = Q8Step(i0, m, n, *(int*)(q0 + at), *(int*)(n0 + at));
                i1 = Q8Step(i1, m, n, *(int*)(q1 + at), *(int*)(n1 + at));
                i2 = Q8Step(i2, m, n, *(int*)(q2 + at), *(int*)(n2 + at));
                i3 = Q8Step(i3, m, n, *(int*)(q3 + at), *(int*)(n3 + at));
            }

            Vector512<float> sw = Scales16(sc);
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i0), sw * Vector512.Create(d0[k]), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i1), sw * Vector512.Create(d1[k]), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i2), sw * Vector512.Create(d2[k]), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i3), sw * Vector512.Create(d3[k]), acc3);
        }

        acc0.Store(tile);
        acc1.Store(tile + 16);
        acc2.Store(tile + 32);
        acc3.Store(tile + 48);
    }

    private static void Q8_0x1Avx512(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b), n0 = a.RowN(b);
        float* d0 = a.RowD(b);
        Vector512<float> acc0 = default;
        for (int k = 0; k < blocks; k++, w += 512, sc += PackedQuant.GroupRows)
        {
            // Two integer accumulators (even and odd slices) for more independent work; their sum is exact.
            Vector512<int> even = default, odd = default;
            int o = k * 32;
            for (int s = 0; s < 8; s += 2)
            {
                Sse.Prefetch0(w + s * 64 + PrefetchAhead);
                Sse.Prefetch0(w + s * 64 + 64 + PrefetchAhead);

                Vector512<sbyte> v = Vector512.Load((sbyte*)w + s * 64);
                Vector512<sbyte> u = Vector512.Load((sbyte*)w + s * 64 + 64);
                even = Q8Step(even, Avx512BW.Abs(v), Vector512.LessThan(v, Vector512<sbyte>.Zero), *(int*)(q0 + o + 4 * s), *(int*)(n0 + o + 4 * s));
                odd = Q8Step(odd, Avx512BW.Abs(u), Vector512.LessThan(u, Vector512<sbyte>.Zero), *(int*)(q0 + o + 4 * s + 4), *(int*)(n0 + o + 4 * s + 4));
            }

            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(even + odd), Scales16(sc) * Vector512.Create(d0[k]), acc0);
        }

        acc0.Store(tile);
    }

    /// <summary>Σ over a block of nibbles·q, in int16 lanes (exact, see the class), for one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Q4Block(Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3, sbyte* x)
    {
        Vector512<short> s = Avx512BW.MultiplyAddAdjacent(l0, Vector512.Create(*(int*)x).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(l1, Vector512.Create(*(int*)(x + 4)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(l2, Vector512.Create(*(int*)(x + 8)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(l3, Vector512.Create(*(int*)(x + 12)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(h0, Vector512.Create(*(int*)(x + 16)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(h1, Vector512.Create(*(int*)(x + 20)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(h2, Vector512.Create(*(int*)(x + 24)).AsSByte());
        s += Avx512BW.MultiplyAddAdjacent(h3, Vector512.Create(*(int*)(x + 28)).AsSByte());
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q4Accumulate(Vector512<short> s, int sum, Vector512<float> scale, Vector512<float> acc)
    {
        Vector512<int> dot = Avx512BW.MultiplyAddAdjacent(s, Vector512.Create((short)1)) - Vector512.Create(sum * 8);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(dot), scale, acc);
    }

    private static void Q4_0x4Avx512(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b + 1), q2 = a.RowQ(b + 2), q3 = a.RowQ(b + 3);
        float* d0 = a.RowD(b), d1 = a.RowD(b + 1), d2 = a.RowD(b + 2), d3 = a.RowD(b + 3);
        int* s0 = a.RowSums(b), s1 = a.RowSums(b + 1), s2 = a.RowSums(b + 2), s3 = a.RowSums(b + 3);
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        for (int k = 0; k < blocks; k++, w += 256, sc += PackedQuant.GroupRows)
        {
            byte* n = w;
            Prefetch256(n);

            Vector512<byte> v0 = Vector512.Load(n), v1 = Vector512.Load(n + 64), v2 = Vector512.Load(n + 128), v3 = Vector512.Load(n + 192);
            Vector512<byte> l0 = v0 & mask, l1 = v1 & mask, l2 = v2 & mask, l3 = v3 & mask;
            Vector512<byte> h0 = (v0.AsUInt16() >>> 4).AsByte() & mask, h1 = (v1.AsUInt16() >>> 4).AsByte() & mask;
            Vector512<byte> h2 = (v2.AsUInt16() >>> 4).AsByte() & mask, h3 = (v3.AsUInt16() >>> 4).AsByte() & mask;
            Vector512<float> sw = Scales16(sc);
            int o = k * 32;
            acc0 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q0 + o), s0[k], sw * Vector512.Create(d0[k]), acc0);
            acc1 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q1 + o), s1[k], sw * Vector512.Create(d1[k]), acc1);
            acc2 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q2 + o), s2[k], sw * Vector512.Create(d2[k]), acc2);
            acc3 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q3 + o), s3[k], sw * Vector512.Create(d3[k]), acc3);
        }

        acc0.Store(tile);
        acc1.Store(tile + 16);
        acc2.Store(tile + 32);
        acc3.Store(tile + 48);
    }

    private static void Q4_0x1Avx512(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b);
        float* d0 = a.RowD(b);
        int* s0 = a.RowSums(b);
        Vector512<float> acc0 = default;
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        for (int k = 0; k < blocks; k++, w += 256, sc += PackedQuant.GroupRows)
        {
            byte* n = w;
            Prefetch256(n);

            Vector512<byte> v0 = Vector512.Load(n), v1 = Vector512.Load(n + 64), v2 = Vector512.Load(n + 128), v3 = Vector512.Load(n + 192);
            Vector512<short> s = Q4Block(v0 & mask, v1 & mask, v2 & mask, v3 & mask,
                (v0.AsUInt16() >>> 4).AsByte() & mask, (v1.AsUInt16() >>> 4).AsByte() & mask,
                (v2.AsUInt16() >>> 4).AsByte() & mask, (v3.AsUInt16() >>> 4).AsByte() & mask, q0 + k * 32);
            acc0 = Q4Accumulate(s, s0[k], Scales16(sc) * Vector512.Create(d0[k]), acc0);
        }

        acc0.Store(tile);
    }

    // ---- AVX-VNNI (256-bit vpdpbusd): a Q8_0 weight plus 128 is an unsigned byte, so one instruction per eight rows ----

    /// <summary>
    /// The four-row Q8_0 tile with AVX-VNNI: each weight byte x-ored with 0x80 is w + 128 (0..255), vpdpbusd adds four
    /// (w + 128)·q products per lane, and 128·Σq of the block (<see cref="Q8Activations.Sums"/>) is taken off: the block's
    /// exact integer dot, so every result keeps its bits. Per slice and activation row two vpdpbusd replace a blend,
    /// vpmaddubsw, vpmaddwd and an add on 512-bit vectors. Rows b .. b + 3 capped at <paramref name="last"/>, as the AVX2 tile.
    /// </summary>
    private static void Q8_0x4Vnni(byte* w, float* sc, int blocks, in Q8Activations a, int b, int last, float* tile)
    {
        int b1 = Math.Min(b + 1, last), b2 = Math.Min(b + 2, last), b3 = Math.Min(b + 3, last);
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b1), q2 = a.RowQ(b2), q3 = a.RowQ(b3);
        float* d0 = a.RowD(b), d1 = a.RowD(b1), d2 = a.RowD(b2), d3 = a.RowD(b3);
        int* s0 = a.RowSums(b), s1 = a.RowSums(b1), s2 = a.RowSums(b2), s3 = a.RowSums(b3);
        Vector256<float> f0 = default, g0 = default, f1 = default, g1 = default, f2 = default, g2 = default, f3 = default, g3 = default;
        for (int k = 0; k < blocks; k++, w += 512, sc += PackedQuant.GroupRows, q0 += 32, q1 += 32, q2 += 32, q3 += 32)
        {
            var t = new VnniTile();
            VnniSlice(w, q0, q1, q2, q3, ref t);
            VnniSlice(w + 64, q0 + 4, q1 + 4, q2 + 4, q3 + 4, ref t);
            VnniSlice(w + 128, q0 + 8, q1 + 8, q2 + 8, q3 + 8, ref t);
            VnniSlice(w + 192, q0 + 12, q1 + 12, q2 + 12, q3 + 12, ref t);
            VnniSlice(w + 256, q0 + 16, q1 + 16, q2 + 16, q3 + 16, ref t);
            VnniSlice(w + 320, q0 + 20, q1 + 20, q2 + 20, q3 + 20, ref t);
            VnniSlice(w + 384, q0 + 24, q1 + 24, q2 + 24, q3 + 24, ref t);
            VnniSlice(w + 448, q0 + 28, q1 + 28, q2 + 28, q3 + 28, ref t);
            Vector256<float> lo = Vector256.Load(sc), hi = Vector256.Load(sc + 8);
            Vector256<int> c0 = Vector256.Create(s0[k] << 7), c1 = Vector256.Create(s1[k] << 7);
            Vector256<int> c2 = Vector256.Create(s2[k] << 7), c3 = Vector256.Create(s3[k] << 7);
            Vector256<float> e0 = Vector256.Create(d0[k]), e1 = Vector256.Create(d1[k]), e2 = Vector256.Create(d2[k]), e3 = Vector256.Create(d3[k]);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.L0 - c0), lo * e0, f0);
            g0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.H0 - c0), hi * e0, g0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.L1 - c1), lo * e1, f1);
            g1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.H1 - c1), hi * e1, g1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.L2 - c2), lo * e2, f2);
            g2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.H2 - c2), hi * e2, g2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.L3 - c3), lo * e3, f3);
            g3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(t.H3 - c3), hi * e3, g3);
        }

        f0.Store(tile);
        g0.Store(tile + 8);
        f1.Store(tile + 16);
        g1.Store(tile + 24);
        f2.Store(tile + 32);
        g2.Store(tile + 40);
        f3.Store(tile + 48);
        g3.Store(tile + 56);
    }

    /// <summary>A block's integer sums of the VNNI tile: rows 0-7 (L) and 8-15 (H) of the group by four activation rows.</summary>
    private struct VnniTile
    {
        public Vector256<int> L0, H0, L1, H1, L2, H2, L3, H3;
    }

    /// <summary>One 64-byte slice (sixteen rows by four values) by four activation rows' four bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VnniSlice(byte* w, sbyte* q0, sbyte* q1, sbyte* q2, sbyte* q3, ref VnniTile t)
    {
        Sse.Prefetch0(w + PrefetchAhead);
        Vector256<byte> flip = Vector256.Create((byte)0x80);
        Vector256<byte> lo = Vector256.Load(w) ^ flip, hi = Vector256.Load(w + 32) ^ flip;
        Vector256<sbyte> x0 = Vector256.Create(*(int*)q0).AsSByte(), x1 = Vector256.Create(*(int*)q1).AsSByte();
        Vector256<sbyte> x2 = Vector256.Create(*(int*)q2).AsSByte(), x3 = Vector256.Create(*(int*)q3).AsSByte();
        t.L0 = AvxVnni.MultiplyWideningAndAdd(t.L0, lo, x0);
        t.H0 = AvxVnni.MultiplyWideningAndAdd(t.H0, hi, x0);
        t.L1 = AvxVnni.MultiplyWideningAndAdd(t.L1, lo, x1);
        t.H1 = AvxVnni.MultiplyWideningAndAdd(t.H1, hi, x1);
        t.L2 = AvxVnni.MultiplyWideningAndAdd(t.L2, lo, x2);
        t.H2 = AvxVnni.MultiplyWideningAndAdd(t.H2, hi, x2);
        t.L3 = AvxVnni.MultiplyWideningAndAdd(t.L3, lo, x3);
        t.H3 = AvxVnni.MultiplyWideningAndAdd(t.H3, hi, x3);
    }

    // ---- AVX2: a vector is half a group (8 rows); the same layout, read 32 bytes of each 64 ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q8Step(Vector256<int> acc, Vector256<byte> magnitude, Vector256<sbyte> w, int x4) =>
        IntDot.Unsigned(acc, magnitude, Avx2.Sign(Vector256.Create(x4).AsSByte(), w));

    /// <summary>
    /// Activation rows b, b + 1, b + 2, b + 3, each capped at <paramref name="last"/> (a tail of two or three repeats its last row).
    /// The eight slices of a block are written out (constant offsets from pointers that move a block at a time): the
    /// loop's index arithmetic competed with the vector work for issue slots (about 10 % on Zen 3, hot in cache).
    /// </summary>
    private static void Q8_0x4Avx2(byte* w, float* sc, int half, int blocks, in Q8Activations a, int b, int last, float* tile)
    {
        int b1 = Math.Min(b + 1, last), b2 = Math.Min(b + 2, last), b3 = Math.Min(b + 3, last);
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b1), q2 = a.RowQ(b2), q3 = a.RowQ(b3);
        float* d0 = a.RowD(b), d1 = a.RowD(b1), d2 = a.RowD(b2), d3 = a.RowD(b3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        sbyte* v = (sbyte*)w + half * 32;
        for (int k = 0; k < blocks; k++, v += 512, sc += PackedQuant.GroupRows, q0 += 32, q1 += 32, q2 += 32, q3 += 32)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            Q8Slice(v, q0, q1, q2, q3, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 64, q0 + 4, q1 + 4, q2 + 4, q3 + 4, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 128, q0 + 8, q1 + 8, q2 + 8, q3 + 8, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 192, q0 + 12, q1 + 12, q2 + 12, q3 + 12, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 256, q0 + 16, q1 + 16, q2 + 16, q3 + 16, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 320, q0 + 20, q1 + 20, q2 + 20, q3 + 20, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 384, q0 + 24, q1 + 24, q2 + 24, q3 + 24, ref i0, ref i1, ref i2, ref i3);
            Q8Slice(v + 448, q0 + 28, q1 + 28, q2 + 28, q3 + 28, ref i0, ref i1, ref i2, ref i3);
            Vector256<float> sw = Vector256.Load(sc + half * 8);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), sw * Vector256.Create(d0[k]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), sw * Vector256.Create(d1[k]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), sw * Vector256.Create(d2[k]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), sw * Vector256.Create(d3[k]), acc3);
        }

        acc0.Store(tile);
        acc1.Store(tile + 16);
        acc2.Store(tile + 32);
        acc3.Store(tile + 48);
    }

    /// <summary>One 32-byte slice (eight rows by four values) by four activation rows' four bytes at <paramref name="q0"/> .. <paramref name="q3"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8Slice(sbyte* w, sbyte* q0, sbyte* q1, sbyte* q2, sbyte* q3,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
    {
        Sse.Prefetch0(w + PrefetchAhead);
        Vector256<sbyte> v = Vector256.Load(w);
        Vector256<byte> m = Avx2.Abs(v);
        i0 = Q8Step(i0, m, v, *(int*)q0);
        i1 = Q8Step(i1, m, v, *(int*)q1);
        i2 = Q8Step(i2, m, v, *(int*)q2);
        i3 = Q8Step(i3, m, v, *(int*)q3);
    }

    /// <summary>
    /// One activation row by the whole group, both halves in one pass over the group's bytes (decode reads the weights
    /// once, in order: each 64-byte slice is one cache line holding both halves).
    /// </summary>
    private static void Q8_0x1Avx2(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b);
        float* d0 = a.RowD(b);
        Vector256<float> lo = default, hi = default;
        for (int k = 0; k < blocks; k++, w += 512, sc += PackedQuant.GroupRows)
        {
            Vector256<int> loEven = default, loOdd = default, hiEven = default, hiOdd = default;
            int o = k * 32;
            for (int s = 0; s < 8; s += 2)
            {
                Sse.Prefetch0(w + s * 64 + PrefetchAhead);
                Sse.Prefetch0(w + s * 64 + 64 + PrefetchAhead);
                Vector256<sbyte> v0 = Vector256.Load((sbyte*)w + s * 64), v1 = Vector256.Load((sbyte*)w + s * 64 + 32);
                Vector256<sbyte> u0 = Vector256.Load((sbyte*)w + s * 64 + 64), u1 = Vector256.Load((sbyte*)w + s * 64 + 96);
                int x = *(int*)(q0 + o + 4 * s), y = *(int*)(q0 + o + 4 * s + 4);
                loEven = Q8Step(loEven, Avx2.Abs(v0), v0, x);
                hiEven = Q8Step(hiEven, Avx2.Abs(v1), v1, x);
                loOdd = Q8Step(loOdd, Avx2.Abs(u0), u0, y);
                hiOdd = Q8Step(hiOdd, Avx2.Abs(u1), u1, y);
            }

            Vector256<float> d = Vector256.Create(d0[k]);
            lo = Fma.MultiplyAdd(Avx.ConvertToVector256Single(loEven + loOdd), Scales8(sc) * d, lo);
            hi = Fma.MultiplyAdd(Avx.ConvertToVector256Single(hiEven + hiOdd), Scales8(sc + 8) * d, hi);
        }

        lo.Store(tile);
        hi.Store(tile + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Q4Block(Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
        Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3, sbyte* x)
    {
        Vector256<short> s = Avx2.MultiplyAddAdjacent(l0, Vector256.Create(*(int*)x).AsSByte());
        s += Avx2.MultiplyAddAdjacent(l1, Vector256.Create(*(int*)(x + 4)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(l2, Vector256.Create(*(int*)(x + 8)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(l3, Vector256.Create(*(int*)(x + 12)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(h0, Vector256.Create(*(int*)(x + 16)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(h1, Vector256.Create(*(int*)(x + 20)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(h2, Vector256.Create(*(int*)(x + 24)).AsSByte());
        s += Avx2.MultiplyAddAdjacent(h3, Vector256.Create(*(int*)(x + 28)).AsSByte());
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4Accumulate(Vector256<short> s, int sum, Vector256<float> scale, Vector256<float> acc)
    {
        Vector256<int> dot = Avx2.MultiplyAddAdjacent(s, Vector256.Create((short)1)) - Vector256.Create(sum * 8);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(dot), scale, acc);
    }

    /// <summary>Activation rows b .. b + 3 capped at <paramref name="last"/>, as <see cref="Q8_0x4Avx2"/>.</summary>
    private static void Q4_0x4Avx2(byte* w, float* sc, int half, int blocks, in Q8Activations a, int b, int last, float* tile)
    {
        int b1 = Math.Min(b + 1, last), b2 = Math.Min(b + 2, last), b3 = Math.Min(b + 3, last);
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b1), q2 = a.RowQ(b2), q3 = a.RowQ(b3);
        float* d0 = a.RowD(b), d1 = a.RowD(b1), d2 = a.RowD(b2), d3 = a.RowD(b3);
        int* s0 = a.RowSums(b), s1 = a.RowSums(b1), s2 = a.RowSums(b2), s3 = a.RowSums(b3);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int k = 0; k < blocks; k++, w += 256, sc += PackedQuant.GroupRows)
        {
            byte* n = w + half * 32;
            if (half == 0)
            {
                Prefetch256(n);
            }

            Vector256<byte> v0 = Vector256.Load(n), v1 = Vector256.Load(n + 64), v2 = Vector256.Load(n + 128), v3 = Vector256.Load(n + 192);
            Vector256<byte> l0 = v0 & mask, l1 = v1 & mask, l2 = v2 & mask, l3 = v3 & mask;
            Vector256<byte> h0 = (v0.AsUInt16() >>> 4).AsByte() & mask, h1 = (v1.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<byte> h2 = (v2.AsUInt16() >>> 4).AsByte() & mask, h3 = (v3.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<float> sw = Vector256.Load(sc + half * 8);
            int o = k * 32;
            acc0 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q0 + o), s0[k], sw * Vector256.Create(d0[k]), acc0);
            acc1 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q1 + o), s1[k], sw * Vector256.Create(d1[k]), acc1);
            acc2 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q2 + o), s2[k], sw * Vector256.Create(d2[k]), acc2);
            acc3 = Q4Accumulate(Q4Block(l0, l1, l2, l3, h0, h1, h2, h3, q3 + o), s3[k], sw * Vector256.Create(d3[k]), acc3);
        }

        acc0.Store(tile);
        acc1.Store(tile + 16);
        acc2.Store(tile + 32);
        acc3.Store(tile + 48);
    }

    /// <summary>One activation row by the whole group, both halves in one pass (as <see cref="Q8_0x1Avx2"/>).</summary>
    private static void Q4_0x1Avx2(byte* w, ushort* sc, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q0 = a.RowQ(b);
        float* d0 = a.RowD(b);
        int* s0 = a.RowSums(b);
        Vector256<float> lo = default, hi = default;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int k = 0; k < blocks; k++, w += 256, sc += PackedQuant.GroupRows)
        {
            Prefetch256(w);
            Vector256<byte> v0 = Vector256.Load(w), v1 = Vector256.Load(w + 64), v2 = Vector256.Load(w + 128), v3 = Vector256.Load(w + 192);
            Vector256<byte> u0 = Vector256.Load(w + 32), u1 = Vector256.Load(w + 96), u2 = Vector256.Load(w + 160), u3 = Vector256.Load(w + 224);
            sbyte* x = q0 + k * 32;
            Vector256<short> sl = Q4Block(v0 & mask, v1 & mask, v2 & mask, v3 & mask,
                (v0.AsUInt16() >>> 4).AsByte() & mask, (v1.AsUInt16() >>> 4).AsByte() & mask,
                (v2.AsUInt16() >>> 4).AsByte() & mask, (v3.AsUInt16() >>> 4).AsByte() & mask, x);
            Vector256<short> sh = Q4Block(u0 & mask, u1 & mask, u2 & mask, u3 & mask,
                (u0.AsUInt16() >>> 4).AsByte() & mask, (u1.AsUInt16() >>> 4).AsByte() & mask,
                (u2.AsUInt16() >>> 4).AsByte() & mask, (u3.AsUInt16() >>> 4).AsByte() & mask, x);
            Vector256<float> d = Vector256.Create(d0[k]);
            lo = Q4Accumulate(sl, s0[k], Scales8(sc) * d, lo);
            hi = Q4Accumulate(sh, s0[k], Scales8(sc + 8) * d, hi);
        }

        lo.Store(tile);
        hi.Store(tile + 8);
    }

    // ---- Vector128 (ARM64 AdvSimd, or x86 without AVX2): a vector is a quarter of a group (4 rows), portable operations ----

    /// <summary>
    /// One activation row by rows 4·quad..4·quad+3 of a group: bytes widened to 16 bits (products are exact in 16 bits),
    /// then to 32, one int vector per row, summed per block.
    /// </summary>
    private static void Vector128x1(byte* w, ushort* sc, bool q8, int quad, int blocks, in Q8Activations a, int b, float* tile)
    {
        sbyte* q = a.RowQ(b);
        float* d = a.RowD(b);
        int* sums = a.RowSums(b);
        int blockBytes = PackedQuant.BytesPerBlock(q8 ? GgmlType.Q8_0 : GgmlType.Q4_0);
        Vector128<float> acc = default;
        for (int k = 0; k < blocks; k++, w += blockBytes, sc += PackedQuant.GroupRows)
        {
            Vector128<int> r0 = default, r1 = default, r2 = default, r3 = default;
            sbyte* x = q + k * 32;
            byte* quants = w + quad * 16;
            if (q8)
            {
                for (int s = 0; s < 8; s++)
                {
                    Products(Vector128.Load((sbyte*)quants + s * 64), *(int*)(x + 4 * s), ref r0, ref r1, ref r2, ref r3);
                }
            }
            else
            {
                for (int s = 0; s < 4; s++)
                {
                    Vector128<byte> v = Vector128.Load(quants + s * 64);
                    Products((v & Vector128.Create((byte)0x0F)).AsSByte(), *(int*)(x + 4 * s), ref r0, ref r1, ref r2, ref r3);
                    Products(Vector128.ShiftRightLogical(v, 4).AsSByte(), *(int*)(x + 16 + 4 * s), ref r0, ref r1, ref r2, ref r3);
                }
            }

            Vector128<int> dot = Vector128.Create(Vector128.Sum(r0), Vector128.Sum(r1), Vector128.Sum(r2), Vector128.Sum(r3));
            if (!q8)
            {
                dot -= Vector128.Create(sums[k] * 8);
            }

            acc = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(dot), Scales4(sc + quad * 4) * Vector128.Create(d[k]), acc);
        }

        acc.Store(tile);
    }

    /// <summary>Adds the 16 products of 4 rows x 4 values (<paramref name="w"/>) by the 4 activations <paramref name="x4"/>, one vector per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Products(Vector128<sbyte> w, int x4, ref Vector128<int> r0, ref Vector128<int> r1, ref Vector128<int> r2, ref Vector128<int> r3)
    {
        (Vector128<short> x, _) = Vector128.Widen(Vector128.Create(x4).AsSByte());
        (Vector128<short> lo, Vector128<short> hi) = Vector128.Widen(w);
        (Vector128<int> p0, Vector128<int> p1) = Vector128.Widen(lo * x);
        (Vector128<int> p2, Vector128<int> p3) = Vector128.Widen(hi * x);
        r0 += p0;
        r1 += p1;
        r2 += p2;
        r3 += p3;
    }
}
