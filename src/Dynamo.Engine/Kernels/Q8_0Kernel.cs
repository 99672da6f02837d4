namespace Dynamo.Engine.Kernels;

/// <summary>
/// Q8_0: blocks of 32 values, an fp16 scale d then 32 int8 q; value = d * q. The scalar references on the file's
/// layout; products run on the repacked copy (<see cref="PackedQuant"/>, <see cref="PackedQuantKernel"/>), whose
/// reduction order <see cref="DotReference"/> follows exactly.
/// </summary>
internal static unsafe class Q8_0Kernel
{
    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int k = 0; k < cols / 32; k++)
        {
            byte* blk = row + k * 34;
            float d = HalfConvert.F16(*(ushort*)blk);
            for (int j = 0; j < 32; j++)
            {
                destination[k * 32 + j] = d * ((sbyte*)blk)[2 + j];
            }
        }
    }

    public static float DotReference(byte* row, in Q8Activations a, int b)
    {
        sbyte* q = a.RowQ(b);
        float* d = a.RowD(b);
        float sum = 0;
        for (int k = 0; k < a.Blocks; k++)
        {
            byte* blk = row + k * 34;
            int dot = 0;
            for (int j = 0; j < 32; j++)
            {
                dot += ((sbyte*)blk)[2 + j] * q[k * 32 + j];
            }

            sum = MathF.FusedMultiplyAdd(dot, HalfConvert.F16(*(ushort*)blk) * d[k], sum);
        }

        return sum;
    }
}
