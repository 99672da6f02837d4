using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Engine.Inference;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Models;

public class ModelLoaderTests
{
    [SharedFact]
    public void Load_Directory_OpensSafeTensors()
    {
        using IModelWeights m = ModelLoader.Load(SharedData.Path("models", "tinystories-656k"));

        Assert.IsType<SafeTensorsModel>(m);
    }

    [Fact]
    public void Load_GgufFile_OpensGguf()
    {
        using var dir = new TempDir();
        using IModelWeights m = ModelLoader.Load(GgufTestWriter.TinyModel("llama").WriteTo(dir.Path, "m.bin"));

        Assert.IsType<GgufModel>(m);
        Assert.Equal(32, m.Config.Dim);
    }

    [Fact]
    public void Load_MissingPath_ThrowsModelFormatException()
    {
        Assert.Contains("no such file", Assert.Throws<ModelFormatException>(() => ModelLoader.Load("/nonexistent/model")).Problem);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("mamba")]
    public void Load_GgufOfUnknownArchitecture_ThrowsNamingIt(string arch)
    {
        using var dir = new TempDir();
        string path = new RandomGgufModel { Architecture = arch }.WriteTo(dir.Path);

        ModelFormatException e = Assert.Throws<ModelFormatException>(() => ModelLoader.Load(path));

        Assert.Contains($"unsupported architecture '{arch}'", e.Problem);
    }
}
