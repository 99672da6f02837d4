using System.Text.Json;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>
/// /v1/completions: prompts as given (text or token ids); <c>text_completion</c> chunks (text deltas, then an
/// empty text with the finish reason) or one <c>text_completion</c>; log probabilities as parallel arrays.
/// </summary>
internal sealed class CompletionResponseShape() : ResponseShape("completions", "completions", "cmpl-")
{
    private static readonly JsonEncodedText ChunkObject = JsonEncodedText.Encode("text_completion");

    public override OpenAiRequestBase ReadRequest(ReadOnlySpan<byte> body) => OpenAiRequestReader.ReadCompletion(body);

    public override PreprocessedRequest Preprocess(Preprocessor preprocessor, OpenAiRequestBase request) =>
        preprocessor.Preprocess((CompletionRequest)request);

    public override void WriteChunks(IChunkWriter chunks, ResponseHead head, in ChoiceEvent e, bool first, GenerationInfo info)
    {
        ChoiceDelta d = e.Delta;
        Utf8JsonWriter json;
        if (d.Logprobs is { Count: > 0 } logprobs)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteString(Names.Text, d.Text);
            var entries = new (ChatTokenLogprob, int)[logprobs.Count];
            for (int i = 0; i < entries.Length; i++)
            {
                entries[i] = (logprobs[i], d.TextOffset);
            }

            json.WritePropertyName(Names.Logprobs);
            JsonSerializer.Serialize(json, ChoicePostprocessor.ToCompletionLogprobs(entries, info.TopLogprobs > 0), OpenAiJsonContext.Default.CompletionLogprobs);
            EndChoiceChunk(chunks, json, null);
        }
        else if (d.Text.Length > 0)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteString(Names.Text, d.Text);
            json.WriteNull(Names.Logprobs);
            EndChoiceChunk(chunks, json, null);
        }

        if (d.FinishReason is not null)
        {
            json = BeginChoiceChunk(chunks, head, ChunkObject, e.Index);
            json.WriteString(Names.Text, "");
            json.WriteNull(Names.Logprobs);
            EndChoiceChunk(chunks, json, d.FinishReason);
        }
    }

    public override void WriteUsageChunk(IChunkWriter chunks, ResponseHead head, Usage usage)
    {
        JsonSerializer.Serialize(chunks.BeginChunk(), new CompletionResponse { Id = head.Id, Created = head.Created, Model = head.Model, Choices = [], Usage = usage },
            OpenAiJsonContext.Default.CompletionResponse);
        chunks.EndChunk();
    }

    public override void WriteResponse(Utf8JsonWriter json, ResponseHead head, IReadOnlyList<GatheredChoice> choices, Usage usage, GenerationInfo info)
    {
        bool withLogprobs = info.Logprobs != LogprobsFormat.None;
        var response = new CompletionResponse
        {
            Id = head.Id,
            Created = head.Created,
            Model = head.Model,
            Choices = [.. choices.Select((c, i) => new CompletionChoice
            {
                Index = i,
                Text = c.Text,
                Logprobs = withLogprobs ? ChoicePostprocessor.ToCompletionLogprobs(c.Logprobs, info.TopLogprobs > 0) : null,
                FinishReason = c.FinishReason,
            })],
            Usage = usage,
        };
        JsonSerializer.Serialize(json, response, OpenAiJsonContext.Default.CompletionResponse);
    }
}
