using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// F16 weights, converted exactly while they are read: groups of 16 without infinities or NaNs take
/// the short conversion (<see cref="HalfConvert.ConvertFinite"/>); any other group the exact general one.
/// </summary>
internal readonly unsafe struct F16Weights : IFloatWeights
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* w, int i, out Vector256<float> lo, out Vector256<float> hi)
    {
        Vector256<ushort> h = Vector256.Load((ushort*)w + i);
        (Vector256<uint> l, Vector256<uint> u) = Vector256.Widen(h);
        var exponent = Vector256.Create((ushort)0x7C00);
        if (Vector256.EqualsAny(h & exponent, exponent))
        {
            lo = HalfConvert.Convert(l);
            hi = HalfConvert.Convert(u);
        }
        else
        {
            lo = HalfConvert.ConvertFinite(l);
            hi = HalfConvert.ConvertFinite(u);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16Wide(byte* w, int i)
    {
        Load16(w, i, out Vector256<float> lo, out Vector256<float> hi);
        return Vector512.Create(lo, hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float At(byte* w, int i) => HalfConvert.F16(((ushort*)w)[i]);

    public static void ToFloats(byte* w, float* destination, int n) => HalfConvert.F16ToFloat(w, destination, n);
}
