using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Kernels;

public unsafe class WorkerPoolTests
{
    private static void Count(void* context, int chunk) => Interlocked.Increment(ref ((int*)context)[chunk]);

    [Fact]
    public void Run_ManyJobs_RunsEveryChunkExactlyOnce()
    {
        using var pool = new WorkerPool(2);
        var counts = new int[97];
        fixed (int* p = counts)
        {
            for (int job = 0; job < 500; job++)
            {
                pool.Run(&Count, p, 1 + job % counts.Length);
            }
        }

        for (int c = 0; c < counts.Length; c++)
        {
            int expected = Enumerable.Range(0, 500).Count(job => 1 + job % counts.Length > c);
            Assert.Equal(expected, counts[c]);
        }
    }

    [Fact]
    public void Run_AfterDispose_RunsOnTheCallingThread()
    {
        var pool = new WorkerPool(1);
        pool.Dispose();
        var counts = new int[8];
        fixed (int* p = counts)
        {
            pool.Run(&Count, p, counts.Length);
        }

        Assert.All(counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void Multiply_FromSeveralThreadsAtOnce_GivesTheSameResults()
    {
        Tensor w = TestTensors.Random(GgmlType.Q4_0, 257, 512, 3);
        float[] x = TestTensors.RandomFloats(2 * 512, 4);
        var expected = new float[2 * 257];
        MatMulReference.MultiplyQuantized(w, x, expected, 2);

        System.Threading.Tasks.Parallel.For(0, 8, _ =>
        {
            var y = new float[2 * 257];
            for (int i = 0; i < 50; i++)
            {
                MatMul.Multiply(w, x, y, 2);
                for (int j = 0; j < y.Length; j++)
                {
                    Assert.True(Math.Abs(y[j] - expected[j]) <= 1e-3f * (1 + Math.Abs(expected[j])));
                }
            }
        });
    }
}
