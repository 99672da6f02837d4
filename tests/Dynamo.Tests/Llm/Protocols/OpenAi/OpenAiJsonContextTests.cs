using System.Text.Json;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Tests.Llm.Protocols.OpenAi;

/// <summary>Golden JSON of the OpenAI wire shapes.</summary>
public sealed class OpenAiJsonContextTests
{
    [Fact]
    public void ChatChunk_Serialized_OpenAiShapeWithExplicitNulls()
    {
        var chunk = new ChatCompletionChunk
        {
            Id = "chatcmpl-1", Created = 7, Model = "m",
            Choices = [new ChatChunkChoice { Index = 0, Delta = new ChatDelta { Role = "assistant", Content = "" } }],
        };

        Assert.Equal(
            """{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}""",
            JsonSerializer.Serialize(chunk, OpenAiJsonContext.Default.ChatCompletionChunk));
    }

    [Fact]
    public void ChatCompletion_Serialized_OpenAiShape()
    {
        var response = new ChatCompletionResponse
        {
            Id = "chatcmpl-2", Created = 1, Model = "m",
            Choices = [new ChatChoice { Index = 0, Message = new ChatResponseMessage { Content = "hi" }, FinishReason = "stop" }],
            Usage = new Usage { PromptTokens = 3, CompletionTokens = 1, TotalTokens = 4 },
        };

        Assert.Equal(
            """{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}""",
            JsonSerializer.Serialize(response, OpenAiJsonContext.Default.ChatCompletionResponse));
    }

    [Fact]
    public void CompletionAndModelsAndError_Serialized_OpenAiShape()
    {
        Assert.Equal(
            """{"id":"cmpl-1","object":"text_completion","created":2,"model":"m","choices":[{"index":1,"text":"x","logprobs":null,"finish_reason":"length"}]}""",
            JsonSerializer.Serialize(new CompletionResponse { Id = "cmpl-1", Created = 2, Model = "m", Choices = [new CompletionChoice { Index = 1, Text = "x", FinishReason = "length" }] }, OpenAiJsonContext.Default.CompletionResponse));
        Assert.Equal(
            """{"object":"list","data":[{"id":"m","object":"model","created":5,"owned_by":"dynamo"}]}""",
            JsonSerializer.Serialize(new ModelList { Data = [new ModelObject { Id = "m", Created = 5 }] }, OpenAiJsonContext.Default.ModelList));
        Assert.Equal(
            """{"error":{"message":"bad","type":"invalid_request_error","param":"n","code":"invalid_value"}}""",
            JsonSerializer.Serialize(OpenAiException.BadRequest("bad", "n").ToResponse(), OpenAiJsonContext.Default.ErrorResponse));
    }

    [Fact]
    public void ChatRequest_Deserialized_UnknownFieldsIgnoredPolymorphicFieldsKept()
    {
        ChatCompletionRequest r = JsonSerializer.Deserialize("""{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":"x","whatever":[1],"max_completion_tokens":5,"stream_options":{"include_usage":true}}""", OpenAiJsonContext.Default.ChatCompletionRequest)!;

        Assert.Equal("m", r.Model);
        Assert.Equal(JsonValueKind.Array, r.Messages![0].Content!.Value.ValueKind);
        Assert.Equal(JsonValueKind.String, r.Stop!.Value.ValueKind);
        Assert.Equal(5, r.MaxCompletionTokens);
        Assert.True(r.StreamOptions!.IncludeUsage);
    }
}
