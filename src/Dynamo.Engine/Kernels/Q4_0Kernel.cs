namespace Dynamo.Engine.Kernels;

/// <summary>
/// Q4_0: blocks of 32 values, an fp16 scale d then 16 bytes; the low nibbles are values 0..15, the
/// high nibbles values 16..31; value = (nibble - 8) * d. The scalar references on the file's layout; products run
/// on the repacked copy (<see cref="PackedQuant"/>, <see cref="PackedQuantKernel"/>), whose reduction order
/// <see cref="DotReference"/> follows exactly.
/// </summary>
internal static unsafe class Q4_0Kernel
{
    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int k = 0; k < cols / 32; k++)
        {
            byte* blk = row + k * 18;
            float d = HalfConvert.F16(*(ushort*)blk);
            for (int j = 0; j < 16; j++)
            {
                destination[k * 32 + j] = ((blk[2 + j] & 0xF) - 8) * d;
                destination[k * 32 + 16 + j] = ((blk[2 + j] >> 4) - 8) * d;
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
            byte* blk = row + k * 18;
            int dot = 0;
            for (int j = 0; j < 16; j++)
            {
                dot += ((blk[2 + j] & 0xF) - 8) * q[k * 32 + j] + ((blk[2 + j] >> 4) - 8) * q[k * 32 + 16 + j];
            }

            sum = MathF.FusedMultiplyAdd(dot, HalfConvert.F16(*(ushort*)blk) * d[k], sum);
        }

        return sum;
    }
}
