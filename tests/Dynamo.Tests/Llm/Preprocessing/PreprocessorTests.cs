using System.Text;
using System.Text.Json;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Tests.Frontend;

namespace Dynamo.Tests.Llm.Preprocessing;

public sealed class PreprocessorTests
{
    private static Preprocessor Create(int context = 256) => new(FrontendHarness.Bundle.Value, context);

    [Fact]
    public void Preprocess_Chat_RendersTemplateWithGenerationPromptAndMapsSampling()
    {
        ChatCompletionRequest r = OpenAiRequestReader.ReadChat("""{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_p":0.9,"top_k":5,"seed":3,"n":2,"stop":["a","b"],"max_tokens":7,"logprobs":true,"top_logprobs":3}"""u8);

        PreprocessedRequest p = Create().Preprocess(r);

        string rendered = FrontendHarness.Bundle.Value.ChatTemplate!.RenderChat([new("user", "hi")], true, FrontendHarness.Bundle.Value.BosToken, FrontendHarness.Bundle.Value.EosToken);
        Assert.EndsWith("<|im_start|>assistant\n", rendered);
        Assert.Equal(FrontendHarness.Bundle.Value.Tokenizer.Encode(rendered, false), p.Prompts[0].TokenIds);
        Assert.Equal(2, p.ChoiceCount);
        Assert.Equal(0.5f, p.Sampling.Temperature);
        Assert.Equal(["a", "b"], p.Sampling.Stop);
        Assert.Equal(3, p.Sampling.TopLogprobs);
        Assert.Equal(LogprobsFormat.Chat, p.Logprobs);
        Assert.Equal(7, p.SamplingFor(1).MaxTokens);
        Assert.Equal(3UL, p.SamplingFor(0).Seed);
        Assert.Equal(4UL, p.SamplingFor(1).Seed);
    }

    [Fact]
    public void Preprocess_ChatWithoutMaxTokens_TakesTheRestOfTheContext()
    {
        PreprocessedRequest p = Create(100).Preprocess(OpenAiRequestReader.ReadChat("""{"model":"m","messages":[{"role":"user","content":"hi"}]}"""u8));

        Assert.Equal(100 - p.Prompts[0].TokenIds.Count, p.Prompts[0].MaxTokens);
    }

    [Fact]
    public void BuildGenerateRequest_WorkerProtocolV1()
    {
        PreprocessedRequest p = Create().Preprocess(OpenAiRequestReader.ReadCompletion("""{"model":"m","prompt":[4,5],"temperature":0,"max_tokens":3,"ignore_eos":true}"""u8));

        using JsonDocument doc = JsonDocument.Parse(Preprocessor.BuildGenerateRequest("r-0", p.Prompts[0].TokenIds, p.SamplingFor(0)));

        JsonElement root = doc.RootElement;
        Assert.Equal(1, root.GetProperty("version").GetInt32());
        Assert.Equal("r-0", root.GetProperty("request_id").GetString());
        Assert.Equal([4, 5], root.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(0f, root.GetProperty("sampling").GetProperty("temperature").GetSingle());
        Assert.Equal(3, root.GetProperty("sampling").GetProperty("max_tokens").GetInt32());
        Assert.True(root.GetProperty("sampling").GetProperty("ignore_eos").GetBoolean());
    }

    [Theory]
    [InlineData("""{"model":"m","prompt":"x","temperature":"a"}""", "temperature", "invalid_type")]
    [InlineData("""{"model":"m","prompt":"x",""", null, "invalid_json")]
    public void ReadCompletion_BadBody_BadRequestNamingTheField(string json, string? param, string code)
    {
        OpenAiException e = Assert.Throws<OpenAiException>(() => OpenAiRequestReader.ReadCompletion(Encoding.UTF8.GetBytes(json)));

        Assert.Equal(400, e.StatusCode);
        Assert.Equal(param, e.Param);
        Assert.Equal(code, e.Code);
    }
}
