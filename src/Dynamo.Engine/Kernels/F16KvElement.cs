using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// An F16 KV cache: halves converted exactly while they are read. .NET has no F16C intrinsics (vcvtph2ps), so the
/// conversion is arithmetic on the bits: a group without an infinity or a NaN (every group a finite pass stores)
/// sign-extends each half to 32 bits, shifts it left by 13 and masks it, which leaves the sign in bit 31 and the
/// exponent and mantissa in a float's bits 13..27 (a float 2^-112 times the half, subnormals included), and one
/// multiply by 2^112 scales it back exactly: four instructions for eight halves. A group with an infinity or a NaN takes
/// the general exact conversion (<see cref="HalfConvert.Convert(Vector256{uint})"/>). Sixteen at once with AVX-512.
/// Every one of the 65536 patterns gives the float <see cref="Half"/> converts it to.
/// </summary>
internal readonly unsafe struct F16KvElement : IKvElement<Half>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(Half* p, out Vector256<float> lo, out Vector256<float> hi)
    {
        Vector256<short> h = Vector256.Load((short*)p);
        bool finite = !Vector256.EqualsAny(h & Vector256.Create((short)0x7C00), Vector256.Create((short)0x7C00));
        if (Avx512F.IsSupported)
        {
            Vector512<float> f = Wide(h, finite);
            lo = f.GetLower();
            hi = f.GetUpper();
        }
        else if (finite)
        {
            (Vector256<int> l, Vector256<int> u) = Avx2.IsSupported
                ? (Avx2.ConvertToVector256Int32((short*)p), Avx2.ConvertToVector256Int32((short*)p + 8))
                : Vector256.Widen(h);
            lo = Finite(l);
            hi = Finite(u);
        }
        else
        {
            (Vector256<uint> l, Vector256<uint> u) = Vector256.Widen(h.AsUInt16());
            lo = HalfConvert.Convert(l);
            hi = HalfConvert.Convert(u);
        }
    }

    /// <summary>Elements 0..15 at <paramref name="p"/> as one vector of sixteen (AVX-512 only): the floats <see cref="Load16"/> gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16Wide(Half* p)
    {
        Vector256<short> h = Vector256.Load((short*)p);
        return Wide(h, !Vector256.EqualsAny(h & Vector256.Create((short)0x7C00), Vector256.Create((short)0x7C00)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Wide(Vector256<short> h, bool finite) =>
        finite ? Finite(Avx512F.ConvertToVector512Int32(h)) : HalfConvert.Convert(Avx512F.ConvertToVector512UInt32(h.AsUInt16()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(Half* p)
    {
        Vector128<short> h = Vector128.Load((short*)p);
        if (!Vector128.EqualsAny(h & Vector128.Create((short)0x7C00), Vector128.Create((short)0x7C00)))
        {
            return Finite(Avx2.IsSupported ? Avx2.ConvertToVector256Int32((short*)p) : Vector256.Create(Vector128.WidenLower(h), Vector128.WidenUpper(h)));
        }

        return HalfConvert.Convert(Vector256.Create(Vector128.WidenLower(h.AsUInt16()), Vector128.WidenUpper(h.AsUInt16())));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(Half* p) => HalfConvert.F16((byte*)p);

    /// <summary>
    /// Sixteen finite halves, sign-extended to 32 bits: shifted left by 13, the sign extension's three bits above bit 28
    /// masked off (bit 31 keeps the sign), the result is the half's bits in a float's places, 2^-112 times its value (a
    /// subnormal half becomes a subnormal float, zero stays zero); times 2^112, exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Finite(Vector512<int> s) =>
        ((s << 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector512.Create(TwoTo112);

    /// <summary>Eight finite halves, sign-extended: as <see cref="Finite(Vector512{int})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Finite(Vector256<int> s) =>
        ((s << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle() * Vector256.Create(TwoTo112);

    /// <summary>2^112: a half's exponent bias is 15, a float's 127.</summary>
    private static float TwoTo112 => BitConverter.Int32BitsToSingle(0x77800000);
}
