using System.Text.Json;
using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public sealed class KvTransferLayoutTests
{
    private const string Golden = """{"layers":22,"kv_heads":4,"head_dim":64,"dtype":"f32","block_size":16,"token_count":45}""";

    private static readonly KvTransferLayout Layout = new() { Layers = 22, KvHeads = 4, HeadDim = 64, Dtype = "f32", BlockSize = 16, TokenCount = 45 };

    [Fact]
    public void ToJson_Layout_MatchesGolden()
    {
        Assert.Equal(Golden, Layout.ToJson());
    }

    [Fact]
    public void FromJson_Golden_IsTheLayout()
    {
        Assert.Equal(Layout, KvTransferLayout.FromJson(Golden));
    }

    [Fact]
    public void FromJson_MissingField_Throws()
    {
        Assert.Throws<JsonException>(() => KvTransferLayout.FromJson("""{"layers":22,"kv_heads":4,"head_dim":64,"dtype":"f32","block_size":16}"""));
    }

    [Fact]
    public void ByteCount_Layout_IsKeysAndValuesOfEveryLayerAndToken()
    {
        Assert.Equal(2L * 22 * 45 * 4 * 64 * 4, Layout.ByteCount);
    }
}
