using Dynamo.Llm.Kv;
using Dynamo.Tests.Components.KvTransfer;

namespace Dynamo.Tests.Llm.Kv;

public sealed class KvTransferPartsTests
{
    private const string PartGolden = """{"layers":22,"kv_heads":2,"head_dim":64,"dtype":"f32","block_size":16,"token_count":45,"kv_head_start":2,"model_kv_heads":4,"parts":2}""";

    /// <summary>
    /// The parts of <paramref name="whole"/> a sender with <paramref name="parts"/> ranks would push, one per rank, each
    /// the heads [rank x heads / parts, ...) of every row (written here head by head, apart from the code under test).
    /// </summary>
    internal static KvTransferPayload[] Split(KvTransferPayload whole, int parts)
    {
        KvTransferLayout w = whole.Layout;
        int each = w.KvHeads / parts, head = w.HeadDim * sizeof(float);
        var result = new KvTransferPayload[parts];
        for (int p = 0; p < parts; p++)
        {
            KvTransferLayout layout = w with { KvHeads = each, KvHeadStart = p * each, ModelKvHeads = w.KvHeads, Parts = parts };
            byte[] data = new byte[layout.ByteCount];
            int rows = 2 * w.Layers * w.TokenCount;
            for (int row = 0; row < rows; row++)
            {
                for (int h = 0; h < each; h++)
                {
                    whole.Data.Span.Slice(((row * w.KvHeads) + (p * each) + h) * head, head).CopyTo(data.AsSpan(((row * each) + h) * head));
                }
            }

            result[p] = new KvTransferPayload(layout, data);
        }

        return result;
    }

    [Fact]
    public void ToJson_Part_MatchesGolden_WholeHasNoPartFields()
    {
        var part = new KvTransferLayout { Layers = 22, KvHeads = 2, HeadDim = 64, Dtype = "f32", BlockSize = 16, TokenCount = 45, KvHeadStart = 2, ModelKvHeads = 4, Parts = 2 };

        Assert.Equal(PartGolden, part.ToJson());
        Assert.Equal(part, KvTransferLayout.FromJson(PartGolden));
        Assert.Equal("""{"layers":22,"kv_heads":4,"head_dim":64,"dtype":"f32","block_size":16,"token_count":45}""", part.Whole().ToJson());
        Assert.Null(part.PartProblem());
        Assert.False(part.IsWhole);
        Assert.True(part.Whole().IsWhole);
    }

    [Theory]
    [InlineData(3, 2, 4, 2, "not within")]
    [InlineData(-1, 2, 4, 2, "not within")]
    [InlineData(0, 2, 4, 0, "at least 1")]
    [InlineData(0, 2, 4, 1, "single part must hold all 4")]
    [InlineData(0, 1, 2, 3, "leave a part without heads")]
    public void PartProblem_InconsistentPartFields_SaysWhy(int start, int heads, int model, int parts, string expected)
    {
        var layout = new KvTransferLayout { Layers = 1, KvHeads = heads, HeadDim = 4, Dtype = "f32", BlockSize = 16, TokenCount = 3, KvHeadStart = start, ModelKvHeads = model, Parts = parts };

        Assert.Contains(expected, layout.PartProblem(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2, false)]
    [InlineData(2, true)]
    [InlineData(4, false)]
    [InlineData(4, true)]
    public void Assemble_PartsInAnyOrder_ByteIdenticalToWhole(int parts, bool reversed)
    {
        KvTransferPayload whole = KvTransferServerTests.Payload(layers: 3, kvHeads: 4, headDim: 8, tokens: 19, seed: parts);
        KvTransferPayload[] split = Split(whole, parts);
        if (reversed)
        {
            Array.Reverse(split);
        }

        byte[] assembled = new byte[whole.Data.Length];
        KvTransferParts.Assemble(split, assembled);

        Assert.Equal(whole.Layout, split[0].Layout.Whole());
        Assert.True(whole.Data.Span.SequenceEqual(assembled));
    }

    [Fact]
    public void Assemble_MissingOrDuplicatePart_Throws()
    {
        KvTransferPayload whole = KvTransferServerTests.Payload(layers: 2, kvHeads: 4, headDim: 8, tokens: 5, seed: 9);
        KvTransferPayload[] split = Split(whole, 4);
        byte[] destination = new byte[whole.Data.Length];

        Assert.Contains("KV head 3 is in no part", Assert.Throws<ArgumentException>(() => KvTransferParts.Assemble(split[..3], destination)).Message);
        Assert.Contains("KV head 1 is in two parts", Assert.Throws<ArgumentException>(() => KvTransferParts.Assemble([split[0], split[1], split[1], split[3]], destination)).Message);
    }
}
