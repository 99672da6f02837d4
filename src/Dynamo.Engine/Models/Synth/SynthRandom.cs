using Dynamo.Engine.Kernels;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// The benchmark models' weight generator (../shared/anchors.md, "The benchmark models"): splitmix64 uniforms
/// turned into standard normals by Box-Muller, each weight <c>float(0.02 * N)</c>.
/// </summary>
/// <remarks>
/// The reference is a sequential stream: normal 2p is <c>r cos t</c> and normal 2p + 1 is <c>r sin t</c>, where
/// u1, u2 are splitmix64 outputs 2p + 1 and 2p + 2. Because splitmix64's state after k calls is simply
/// <c>seed + k * 0x9E3779B97F4A7C15</c>, any normal can be computed directly from its index, so chunks of a
/// tensor can be generated in any order and on several threads while giving the same values as the stream.
/// The math is scalar double (Math.Log, Math.Sqrt, Math.Cos, Math.Sin, as the reference), then a float cast.
/// </remarks>
public static class SynthRandom
{
    /// <summary>The scale of every drawn weight: N(0, 0.02²).</summary>
    public const double Scale = 0.02;

    private const ulong Gamma = 0x9E3779B97F4A7C15UL;
    private const double TwoPi = 2 * Math.PI;
    private const double TwoPowMinus53 = 1.0 / (1UL << 53);

    /// <summary>Weights per chunk a kernel thread takes.</summary>
    private const int ParallelChunk = 1 << 16;

    /// <summary>splitmix64's output for a given state (the state after the increment).</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The <paramref name="call"/>-th (1-based) uniform in (0, 1) of the stream seeded with <paramref name="seed"/>.</summary>
    public static double Uniform(ulong seed, ulong call) => ((Mix(seed + (call * Gamma)) >> 11) + 0.5) * TwoPowMinus53;

    /// <summary>The <paramref name="index"/>-th (0-based) standard normal of the stream.</summary>
    public static double Normal(ulong seed, long index)
    {
        ulong pair = (ulong)index >> 1;
        double u1 = Uniform(seed, (2 * pair) + 1);
        double u2 = Uniform(seed, (2 * pair) + 2);
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        double t = TwoPi * u2;
        return (index & 1) == 0 ? r * Math.Cos(t) : r * Math.Sin(t);
    }

    /// <summary>
    /// Writes weights <c>float(0.02 * N[first + i])</c> into <paramref name="destination"/>, on the kernel threads
    /// (<see cref="KernelThreads"/>) when the span is large. Same values as the sequential reference stream.
    /// </summary>
    /// <remarks>
    /// Not <c>Parallel.For</c>: on the shared thread pool it starved the process. Called from a pool thread (a
    /// synchronous command or test), each loop queues a replica to that thread's local queue and then runs it
    /// inline; inlining a queued task counts as thread-pool progress, so while the other pool threads are busy the
    /// pool's starvation detection never adds one and every timer, socket and continuation of the process waits
    /// for the whole write (a minute for rand-1b1). The kernel threads are our own.
    /// </remarks>
    public static void Fill(ulong seed, long first, Span<float> destination)
    {
        WorkerPool? pool = destination.Length < 2 * ParallelChunk ? null : KernelThreads.Pool;
        if (pool is null)
        {
            FillSerial(seed, first, destination);
            return;
        }

        unsafe
        {
            fixed (float* p = destination)
            {
                var job = new FillJob { Seed = seed, First = first, Destination = p, Length = destination.Length };
                pool.Run(&FillChunk, &job, (destination.Length + ParallelChunk - 1) / ParallelChunk);
            }
        }
    }

    private static unsafe void FillChunk(void* context, int chunk)
    {
        ref FillJob job = ref *(FillJob*)context;
        int start = chunk * ParallelChunk;
        FillSerial(job.Seed, job.First + start, new Span<float>(job.Destination + start, Math.Min(ParallelChunk, job.Length - start)));
    }

    private static void FillSerial(ulong seed, long first, Span<float> destination)
    {
        int i = 0;
        if ((first & 1) != 0 && destination.Length > 0)
        {
            destination[0] = (float)(Scale * Normal(seed, first));
            i = 1;
        }

        ulong call = (ulong)(first + i) + 1; // the pair starting at normal first+i uses calls first+i+1, first+i+2
        for (; i + 1 < destination.Length; i += 2, call += 2)
        {
            double u1 = ((Mix(seed + (call * Gamma)) >> 11) + 0.5) * TwoPowMinus53;
            double u2 = ((Mix(seed + ((call + 1) * Gamma)) >> 11) + 0.5) * TwoPowMinus53;
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            double t = TwoPi * u2;
            destination[i] = (float)(Scale * (r * Math.Cos(t)));
            destination[i + 1] = (float)(Scale * (r * Math.Sin(t)));
        }

        if (i < destination.Length)
        {
            destination[i] = (float)(Scale * Normal(seed, first + i));
        }
    }

    /// <summary>One parallel fill: what every chunk needs, on the caller's stack while the kernel threads run.</summary>
    private unsafe struct FillJob
    {
        public ulong Seed;
        public long First;
        public float* Destination;
        public int Length;
    }
}
