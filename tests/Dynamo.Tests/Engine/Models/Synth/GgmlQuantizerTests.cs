using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class GgmlQuantizerTests
{
    [Fact]
    public void QuantizeQ8_0_HandComputedBlocks_MatchGgmlReference()
    {
        float[] x = new float[96];
        // Block 0: amax 127 -> d = 1; round half away from zero.
        x[0] = 127f; x[1] = -2.5f; x[2] = 2.5f; x[3] = 0.4f; x[4] = -0.5f; x[5] = 1.49f;
        // Block 1: all zero -> d = 0, q = 0. Block 2: amax 254 -> d = 2, id = 0.5.
        x[64] = -254f; x[65] = 5f; x[66] = 3f;
        byte[] y = new byte[3 * 34];

        GgmlQuantizer.QuantizeQ8_0(x, y);

        byte[] expected = new byte[3 * 34];
        byte[] block0 = [0x00, 0x3C, 0x7F, 0xFD, 0x03, 0x00, 0xFF, 0x01];
        block0.CopyTo(expected, 0);
        byte[] block2 = [0x00, 0x40, 0x81, 0x03, 0x02]; // d = 2.0 (fp16 0x4000); -127, round(2.5) = 3, round(1.5) = 2
        block2.CopyTo(expected, 68);
        Assert.Equal(expected, y);
    }

    [Fact]
    public void QuantizeQ4_0_NegativeMax_LowNibbleJHighNibbleJPlus16()
    {
        float[] x = new float[32];
        x[0] = -8f; x[1] = 7f; x[2] = 7.9f; x[4] = -0.6f; x[16] = 3f; x[17] = -3f;
        byte[] y = new byte[18];

        GgmlQuantizer.QuantizeQ4_0(x, y);

        // d = -8 / -8 = 1 (fp16 0x3C00); q = min(15, trunc(x + 8.5)): 0, 15, 15 (16 clamped), 8, 7; 11, 5.
        byte[] expected = [0x00, 0x3C, 0xB0, 0x5F, 0x8F, 0x88, 0x87, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88];
        Assert.Equal(expected, y);
    }

    [Fact]
    public void QuantizeQ4_0_PositiveMaxTiedWithNegative_FirstKeepsSign()
    {
        float[] x = new float[32];
        x[0] = 8f; x[1] = -8f;
        byte[] y = new byte[18];

        GgmlQuantizer.QuantizeQ4_0(x, y);

        // max = +8 (first of equal magnitudes) -> d = -1 (fp16 0xBC00), id = -1: q0 = trunc(0.5) = 0, q1 = min(15, 16) = 15.
        Assert.Equal(new byte[] { 0x00, 0xBC, 0x80, 0x8F }, y[..4]);
    }

    [Fact]
    public void ToF16_RoundsToNearestEven()
    {
        float[] x = [1f, 65504f, 1f + (1f / 2048), 1f + (3f / 2048), -2f];
        byte[] y = new byte[10];

        GgmlQuantizer.ToF16(x, y);

        Assert.Equal(new byte[] { 0x00, 0x3C, 0xFF, 0x7B, 0x00, 0x3C, 0x02, 0x3C, 0x00, 0xC0 }, y);
    }

    [Fact]
    public void ToBF16_RoundsToNearestEvenAndQuietsNaN()
    {
        Assert.Equal(0x3F80, GgmlQuantizer.ToBF16(1f));
        Assert.Equal(0x3F80, GgmlQuantizer.ToBF16(BitConverter.UInt32BitsToSingle(0x3F808000)));
        Assert.Equal(0x3F82, GgmlQuantizer.ToBF16(BitConverter.UInt32BitsToSingle(0x3F818000)));
        Assert.Equal(0x3F81, GgmlQuantizer.ToBF16(BitConverter.UInt32BitsToSingle(0x3F808001)));
        Assert.Equal(0x7FC0, GgmlQuantizer.ToBF16(float.NaN));
    }

    [Fact]
    public void Quantize_PartialBlockOrWrongDestination_Throws()
    {
        Assert.Throws<ArgumentException>(() => GgmlQuantizer.Quantize(GgmlType.Q8_0, new float[31], new byte[34]));
        Assert.Throws<ArgumentException>(() => GgmlQuantizer.Quantize(GgmlType.Q4_0, new float[32], new byte[17]));
        Assert.Throws<NotSupportedException>(() => GgmlQuantizer.Quantize(GgmlType.Q6_K, new float[256], new byte[210]));
    }
}
