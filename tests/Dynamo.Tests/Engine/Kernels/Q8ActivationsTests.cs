using Dynamo.Engine.Kernels;

namespace Dynamo.Tests.Engine.Kernels;

public unsafe class Q8ActivationsTests
{
    [Fact]
    public void Quantize_EveryBlockCountUpTo256_MatchesScalarReferenceExactly()
    {
        for (int cols = 32; cols <= 256; cols += 32)
        {
            for (int batch = 1; batch <= 3; batch++)
            {
                float[] x = TestTensors.RandomFloats(cols * batch, cols + batch, 3f);
                x[0] = 0;
                if (cols == 64)
                {
                    Array.Clear(x, 32, 32);
                }

                byte[] fast = new byte[Q8Activations.ScratchBytes(cols, batch)], slow = new byte[fast.Length];
                fixed (float* px = x)
                fixed (byte* pf = fast, ps = slow)
                {
                    Q8Activations.In(pf, cols, batch).Quantize(px, batch);
                    Q8Activations.In(ps, cols, batch).QuantizeReference(px, batch);
                }

                Assert.Equal(slow, fast);
            }
        }
    }

    [Fact]
    public void QuantizeReference_KnownBlock_ScalesByAbsMax()
    {
        float[] x = new float[32];
        x[0] = -2.54f;
        x[1] = 1.27f;
        x[2] = 0.01f;
        byte[] s = new byte[Q8Activations.ScratchBytes(32, 1)];
        fixed (float* px = x)
        fixed (byte* ps = s)
        {
            Q8Activations a = Q8Activations.In(ps, 32, 1);
            a.QuantizeReference(px, 1);

            Assert.Equal(-127, a.Q[0]);
            Assert.Equal(64, a.Q[1]);
            Assert.Equal(0, a.Q[2]);
            Assert.Equal((float)(Half)0.02f, a.D[0]);
            Assert.Equal(-63, a.Sums[0]);
        }
    }
}
