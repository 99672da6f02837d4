using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// An F16 KV cache: halves converted exactly while they are read (<see cref="HalfConvert.Convert(Vector256{uint})"/>,
/// sixteen at once with AVX-512; subnormals, infinities and NaNs included, no denormal arithmetic). .NET has no F16C
/// intrinsics (vcvtph2ps), so the conversion is integer and float arithmetic on the bits.
/// </summary>
internal readonly unsafe struct F16KvElement : IKvElement<Half>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(Half* p, out Vector256<float> lo, out Vector256<float> hi)
    {
        if (Avx512F.IsSupported)
        {
            Vector512<float> f = HalfConvert.Convert(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p)));
            lo = f.GetLower();
            hi = f.GetUpper();
        }
        else
        {
            (Vector256<uint> l, Vector256<uint> u) = Vector256.Widen(Vector256.Load((ushort*)p));
            lo = HalfConvert.Convert(l);
            hi = HalfConvert.Convert(u);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(Half* p) =>
        HalfConvert.Convert(Avx2.IsSupported ? Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32() : Vector256.WidenLower(Vector128.Load((ushort*)p).ToVector256Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(Half* p) => HalfConvert.F16((byte*)p);
}
