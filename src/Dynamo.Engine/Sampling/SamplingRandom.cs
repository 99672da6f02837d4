namespace Dynamo.Engine.Sampling;

/// <summary>
/// splitmix64: a tiny, fully specified generator, so that a seed gives the same tokens on every
/// machine and every .NET version (System.Random's algorithm is an implementation detail). Its n-th
/// output is a pure function of (seed, n): <see cref="UnitAt"/> gives the draw of one output position
/// directly, so that a request resumed elsewhere at position n draws what the first attempt would have.
/// </summary>
public sealed class SamplingRandom(ulong seed)
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    private ulong _state = seed;

    public ulong NextUInt64() => Mix(_state += Gamma);

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => ToUnit(NextUInt64());

    /// <summary>
    /// The uniform draw of output position <paramref name="position"/> (0 for the first generated token) under
    /// <paramref name="seed"/>: the (<paramref name="position"/> + 1)-th <see cref="NextDouble"/> of a generator
    /// made with that seed.
    /// </summary>
    public static double UnitAt(ulong seed, int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        return ToUnit(Mix(seed + ((ulong)position + 1) * Gamma));
    }

    private static double ToUnit(ulong bits) => (bits >> 11) * (1.0 / (1UL << 53));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
