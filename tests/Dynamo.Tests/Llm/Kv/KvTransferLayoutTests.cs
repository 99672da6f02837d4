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

    [Theory]
    [InlineData("""{"layers":22,"kv_heads":4,"head_dim":64,"dtype":"f32","block_size":16}""")]
    [InlineData("""{"layers":22,"kv_heads":4,"head_dim":64,"dtype":null,"block_size":16,"token_count":45}""")]
    [InlineData("""{"layers":"22","kv_heads":4,"head_dim":64,"dtype":"f32","block_size":16,"token_count":45}""")]
    [InlineData("null")]
    public void FromJson_MissingNullOrMistypedField_Throws(string json)
    {
        Assert.Throws<JsonException>(() => KvTransferLayout.FromJson(json));
    }

    [Fact]
    public void FromJson_UnknownField_IsIgnored()
    {
        Assert.Equal(Layout, KvTransferLayout.FromJson(Golden.Replace("{", """{"future":1,""", StringComparison.Ordinal)));
    }

    [Fact]
    public void ByteCount_Layout_IsKeysAndValuesOfEveryLayerAndToken()
    {
        Assert.Equal(2L * 22 * 45 * 4 * 64 * 4, Layout.ByteCount);
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("f16", 2)]
    [InlineData("mocker", 4)]
    public void ByteCount_Dtype_ElementBytesOfIt(string dtype, int elementBytes)
    {
        KvTransferLayout layout = Layout with { Dtype = dtype };

        Assert.Equal(elementBytes, layout.ElementBytes);
        Assert.Equal(2L * 22 * 45 * 4 * 64 * elementBytes, layout.ByteCount);
        Assert.Equal($$"""{"layers":22,"kv_heads":4,"head_dim":64,"dtype":"{{dtype}}","block_size":16,"token_count":45}""", layout.ToJson());
    }
}
