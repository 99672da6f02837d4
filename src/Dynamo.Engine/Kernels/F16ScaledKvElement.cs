using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// An F16 KV cache known to hold finite halves only (<see cref="KvCache.PagedKvCache.HoldsNonFinite"/> false), read as
/// 2^-112 times their values: each half sign-extended, shifted left by 13 and masked (<see cref="F16KvElement"/>'s
/// finite conversion without its final multiply by 2^112, and without its per-group infinity test). Every finite half
/// times 2^-112 is an exact float (a normal half lands in the normal floats, a subnormal one at or above 2^-136), so
/// attention multiplies these by the other operand scaled by 2^112 (the query, the softmax weights: exact, they stay
/// below 2^128) and each product, hence every fused multiply-add and every result, has the bits of the unscaled
/// arithmetic on <see cref="F16KvElement"/>. Three instructions for eight halves instead of four plus the test.
/// </summary>
internal readonly unsafe struct F16ScaledKvElement : IKvElement<Half>
{
    /// <summary>2^112: what the other operand of a product with these elements is scaled by.</summary>
    public static float Scale => BitConverter.Int32BitsToSingle(0x77800000);

    /// <summary>Queries with a magnitude at or above this would overflow when scaled; such a head takes the unscaled path.</summary>
    public const float QueryLimit = 65536f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(Half* p, out Vector256<float> lo, out Vector256<float> hi)
    {
        if (Avx2.IsSupported)
        {
            lo = Bits(Avx2.ConvertToVector256Int32((short*)p));
            hi = Bits(Avx2.ConvertToVector256Int32((short*)p + 8));
        }
        else
        {
            (Vector256<int> l, Vector256<int> u) = Vector256.Widen(Vector256.Load((short*)p));
            lo = Bits(l);
            hi = Bits(u);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(Half* p)
    {
        if (Avx2.IsSupported)
        {
            return Bits(Avx2.ConvertToVector256Int32((short*)p));
        }

        Vector128<short> h = Vector128.Load((short*)p);
        return Bits(Vector256.Create(Vector128.WidenLower(h), Vector128.WidenUpper(h)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(Half* p) => BitConverter.Int32BitsToSingle((*(short*)p << 13) & unchecked((int)0x8FFFE000));

    /// <summary>Sign-extended finite halves in a float's places: 2^-112 times each (see <see cref="F16KvElement"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Bits(Vector256<int> s) => ((s << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();
}
