using System.Text.Json;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>
/// How one OpenAI route reads and preprocesses its requests and writes its responses: chat completions or
/// (legacy) completions. One object per shape, chosen once per route (the frontend's two routes; the kind a
/// processor request names, <see cref="FromKind"/>), so that nothing else branches on the route: the
/// pipeline preprocesses through it, the relay names its kind, the frontend writes chunks and whole
/// responses through it. Streamed chunks are written straight to JSON (no chunk objects per token); golden
/// tests pin the bytes to what the response types serialize to.
/// </summary>
/// <param name="kind">"chat" or "completions": the kind of a processor request (<see cref="ProcessorRequest.Kind"/>).</param>
/// <param name="endpoint">The <c>endpoint</c> label of the frontend's metrics and log line.</param>
/// <param name="idPrefix">What response ids start with.</param>
internal abstract class ResponseShape(string kind, string endpoint, string idPrefix)
{
    /// <summary>/v1/chat/completions.</summary>
    public static ResponseShape Chat { get; } = new ChatResponseShape();

    /// <summary>/v1/completions.</summary>
    public static ResponseShape Completions { get; } = new CompletionResponseShape();

    /// <summary>"chat" or "completions": the kind of a processor request (<see cref="ProcessorRequest.Kind"/>).</summary>
    public string Kind { get; } = kind;

    /// <summary>The <c>endpoint</c> label of the frontend's metrics and log line.</summary>
    public string Endpoint { get; } = endpoint;

    /// <summary>What response ids start with.</summary>
    public string IdPrefix { get; } = idPrefix;

    /// <summary>The shape a processor request's kind names, or null.</summary>
    public static ResponseShape? FromKind(string? kind) => kind switch
    {
        "chat" => Chat,
        "completions" => Completions,
        _ => null,
    };

    /// <summary>Parses and validates a request body (throws <see cref="OpenAiException"/>).</summary>
    public abstract OpenAiRequestBase ReadRequest(ReadOnlySpan<byte> body);

    /// <summary>Applies the model's chat template and tokenizer to a request read by <see cref="ReadRequest"/>.</summary>
    public abstract PreprocessedRequest Preprocess(Preprocessor preprocessor, OpenAiRequestBase request);

    /// <summary>Writes the chunks of one event of a streamed response; <paramref name="first"/>: its choice's first event.</summary>
    public abstract void WriteChunks(IChunkWriter chunks, ResponseHead head, in ChoiceEvent e, bool first, GenerationInfo info);

    /// <summary>Writes the last chunk of a streamed response: no choices, the usage (stream_options.include_usage).</summary>
    public abstract void WriteUsageChunk(IChunkWriter chunks, ResponseHead head, Usage usage);

    /// <summary>Writes a whole response (not streamed).</summary>
    public abstract void WriteResponse(Utf8JsonWriter json, ResponseHead head, IReadOnlyList<GatheredChoice> choices, Usage usage, GenerationInfo info);

    /// <summary>Starts a one-choice chunk: <c>{"id":..,"object":..,"created":..,"model":..,"choices":[{"index":i</c>.</summary>
    private protected static Utf8JsonWriter BeginChoiceChunk(IChunkWriter chunks, ResponseHead head, JsonEncodedText objectName, int index)
    {
        Utf8JsonWriter json = chunks.BeginChunk();
        json.WriteStartObject();
        json.WriteString(Names.Id, head.EncodedId);
        json.WriteString(Names.Object, objectName);
        json.WriteNumber(Names.Created, head.Created);
        json.WriteString(Names.Model, head.EncodedModel);
        json.WriteStartArray(Names.Choices);
        json.WriteStartObject();
        json.WriteNumber(Names.Index, index);
        return json;
    }

    /// <summary>Ends a chunk begun by <see cref="BeginChoiceChunk"/>, writing the choice's <c>finish_reason</c> last.</summary>
    private protected static void EndChoiceChunk(IChunkWriter chunks, Utf8JsonWriter json, string? finishReason)
    {
        if (finishReason is null)
        {
            json.WriteNull(Names.FinishReason);
        }
        else
        {
            json.WriteString(Names.FinishReason, finishReason);
        }

        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
        chunks.EndChunk();
    }

    /// <summary>The property names the chunks use, encoded once.</summary>
    private protected static class Names
    {
        public static readonly JsonEncodedText Id = JsonEncodedText.Encode("id");
        public static readonly JsonEncodedText Object = JsonEncodedText.Encode("object");
        public static readonly JsonEncodedText Created = JsonEncodedText.Encode("created");
        public static readonly JsonEncodedText Model = JsonEncodedText.Encode("model");
        public static readonly JsonEncodedText Choices = JsonEncodedText.Encode("choices");
        public static readonly JsonEncodedText Index = JsonEncodedText.Encode("index");
        public static readonly JsonEncodedText Delta = JsonEncodedText.Encode("delta");
        public static readonly JsonEncodedText Role = JsonEncodedText.Encode("role");
        public static readonly JsonEncodedText Content = JsonEncodedText.Encode("content");
        public static readonly JsonEncodedText Text = JsonEncodedText.Encode("text");
        public static readonly JsonEncodedText Logprobs = JsonEncodedText.Encode("logprobs");
        public static readonly JsonEncodedText FinishReason = JsonEncodedText.Encode("finish_reason");
    }
}
