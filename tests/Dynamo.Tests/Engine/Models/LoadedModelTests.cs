using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Models;

public class LoadedModelTests
{
    private static string TempPath(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-loaded-model-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    [Theory]
    [InlineData(SynthFormat.Gguf)]
    [InlineData(SynthFormat.HuggingFace)]
    public void Load_SynthWithChatMl_RendersTheStoredTemplate(SynthFormat format)
    {
        string path = TempPath(format == SynthFormat.Gguf ? "chat.gguf" : "chat-hf");
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Format = format, ChatTemplate = BuiltinChatTemplates.ChatMl });

        using LoadedModel model = LoadedModel.Load(path);
        string rendered = model.RenderChat([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi")]);

        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", rendered);
        Assert.Equal("<s>", model.BosToken);
        Assert.Equal("</s>", model.EosToken);
    }

    [Fact]
    public void Load_SynthWithoutTemplate_RenderChatNamesTheModel()
    {
        string path = TempPath("plain.gguf");
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path });

        using LoadedModel model = LoadedModel.Load(path);
        var e = Assert.Throws<ModelFormatException>(() => model.RenderChat([new ChatMessage("user", "Hi")]));

        Assert.Contains("no chat template", e.Message);
        Assert.Contains(path, e.Message);
    }

    [SharedFact]
    public void Load_Llama2cWithoutTokenizer_AsksForIt()
    {
        var e = Assert.Throws<ModelFormatException>(() => LoadedModel.Load(SharedData.Path("models", "stories260K", "stories260K.bin")));

        Assert.Contains("--tokenizer", e.Message);
    }

    [SharedFact]
    public void Load_HfDirectory_TakesTokensFromTokenizerConfig()
    {
        using LoadedModel model = LoadedModel.Load(SharedData.Path("models", "tinystories-656k"));

        Assert.Equal("<|start_story|>", model.BosToken);
        Assert.Equal("<|end_story|>", model.EosToken);
        Assert.Equal(1, model.Tokenizer.BosTokenId);
        Assert.Contains(2, model.Tokenizer.EosTokenIds);
    }
}
