using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// An F16 KV cache: halves converted exactly while they are read. .NET has no F16C intrinsics (vcvtph2ps), so the
/// conversion is arithmetic on the bits: a group whose halves are all normal (the common case: keys and values are
/// rarely below 2^-14 in magnitude, and never infinite once a pass stored them) moves the exponent and mantissa into
/// place and re-biases the exponent with integer operations only; a group with a zero, a subnormal, an infinity or a
/// NaN takes the general exact conversion (<see cref="HalfConvert.Convert(Vector256{uint})"/>). Sixteen at once with
/// AVX-512. Every one of the 65536 patterns gives the float <see cref="Half"/> converts it to.
/// </summary>
internal readonly unsafe struct F16KvElement : IKvElement<Half>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(Half* p, out Vector256<float> lo, out Vector256<float> hi)
    {
        Vector256<ushort> h = Vector256.Load((ushort*)p);
        bool allNormal = !Vector256.GreaterThanOrEqualAny((h & Vector256.Create((ushort)0x7C00)) - Vector256.Create((ushort)0x0400), Vector256.Create((ushort)0x7800));
        if (Avx512F.IsSupported)
        {
            Vector512<uint> w = Avx512F.ConvertToVector512UInt32(h);
            Vector512<float> f = allNormal ? Normal(w) : HalfConvert.Convert(w);
            lo = f.GetLower();
            hi = f.GetUpper();
        }
        else
        {
            (Vector256<uint> l, Vector256<uint> u) = Vector256.Widen(h);
            lo = allNormal ? Normal(l) : HalfConvert.Convert(l);
            hi = allNormal ? Normal(u) : HalfConvert.Convert(u);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(Half* p)
    {
        Vector128<ushort> h = Vector128.Load((ushort*)p);
        bool allNormal = !Vector128.GreaterThanOrEqualAny((h & Vector128.Create((ushort)0x7C00)) - Vector128.Create((ushort)0x0400), Vector128.Create((ushort)0x7800));
        Vector256<uint> w = Avx2.IsSupported ? Avx2.ConvertToVector256Int32(h).AsUInt32() : Vector256.WidenLower(h.ToVector256Unsafe());
        return allNormal ? Normal(w) : HalfConvert.Convert(w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(Half* p) => HalfConvert.F16((byte*)p);

    /// <summary>
    /// Sixteen normal halves (zero-extended): exponent and mantissa shifted into a float's (bits 13..27), the exponent
    /// re-biased by 127 - 15 = 112 (an integer add: no carry reaches the sign), the sign moved to bit 31. Exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Normal(Vector512<uint> w) =>
        Vector512.ConditionalSelect(Vector512.Create(0x80000000u), w << 16, ((w << 13) & Vector512.Create(0x0FFFE000u)) + Vector512.Create(112u << 23)).AsSingle();

    /// <summary>Eight normal halves (zero-extended): as <see cref="Normal(Vector512{uint})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Normal(Vector256<uint> w) =>
        Vector256.ConditionalSelect(Vector256.Create(0x80000000u), w << 16, ((w << 13) & Vector256.Create(0x0FFFE000u)) + Vector256.Create(112u << 23)).AsSingle();
}
