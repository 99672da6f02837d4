using System.Text.Json;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>
/// /v1/chat/completions: messages through the chat template; <c>chat.completion.chunk</c>s (the role first
/// per choice, then content deltas, then an empty delta with the finish reason) or one <c>chat.completion</c>.
/// </summary>
internal sealed class ChatResponseShape() : ResponseShape("chat", "chat_completions", "chatcmpl-")
{
    private static readonly JsonEncodedText ChunkObject = JsonEncodedText.Encode("chat.completion.chunk");
    private static readonly JsonEncodedText Assistant = JsonEncodedText.Encode("assistant");

    public override OpenAiRequestBase ReadRequest(ReadOnlySpan<byte> body) => OpenAiRequestReader.ReadChat(body);

    public override PreprocessedRequest Preprocess(Preprocessor preprocessor, OpenAiRequestBase request) =>
        preprocessor.Preprocess((ChatCompletionRequest)request);

    public override void WriteChunks(IChunkWriter chunks, ResponseHead head, in ChoiceEvent e, bool first, GenerationInfo info)
    {
        ChoiceDelta d = e.Delta;
        Utf8JsonWriter json;
        if (first)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteStartObject(Names.Delta);
            json.WriteString(Names.Role, Assistant);
            json.WriteString(Names.Content, "");
            json.WriteEndObject();
            json.WriteNull(Names.Logprobs);
            EndChoiceChunk(chunks, json, null);
        }

        bool hasLogprobs = d.Logprobs is { Count: > 0 };
        if (d.Text.Length > 0 || hasLogprobs)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteStartObject(Names.Delta);
            json.WriteString(Names.Content, d.Text);
            json.WriteEndObject();
            if (hasLogprobs)
            {
                json.WritePropertyName(Names.Logprobs);
                JsonSerializer.Serialize(json, new ChatLogprobs { Content = d.Logprobs! }, OpenAiJsonContext.Default.ChatLogprobs);
            }
            else
            {
                json.WriteNull(Names.Logprobs);
            }

            EndChoiceChunk(chunks, json, null);
        }

        if (d.FinishReason is not null)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteStartObject(Names.Delta);
            json.WriteEndObject();
            json.WriteNull(Names.Logprobs);
            EndChoiceChunk(chunks, json, d.FinishReason);
        }
    }

    public override void WriteUsageChunk(IChunkWriter chunks, ResponseHead head, Usage usage)
    {
        JsonSerializer.Serialize(chunks.BeginChunk(), new ChatCompletionChunk { Id = head.Id, Created = head.Created, Model = head.Model, Choices = [], Usage = usage },
            OpenAiJsonContext.Default.ChatCompletionChunk);
        chunks.EndChunk();
    }

    public override void WriteResponse(Utf8JsonWriter json, ResponseHead head, IReadOnlyList<GatheredChoice> choices, Usage usage, GenerationInfo info)
    {
        bool withLogprobs = info.Logprobs != LogprobsFormat.None;
        var response = new ChatCompletionResponse
        {
            Id = head.Id,
            Created = head.Created,
            Model = head.Model,
            Choices = [.. choices.Select((c, i) => new ChatChoice
            {
                Index = i,
                Message = new ChatResponseMessage { Content = c.Text },
                Logprobs = withLogprobs ? new ChatLogprobs { Content = [.. c.Logprobs.Select(l => l.Entry)] } : null,
                FinishReason = c.FinishReason,
            })],
            Usage = usage,
        };
        JsonSerializer.Serialize(json, response, OpenAiJsonContext.Default.ChatCompletionResponse);
    }
}
