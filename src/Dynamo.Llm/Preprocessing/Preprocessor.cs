using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Turns OpenAI requests into token ids and sampling for one model: chat messages through its chat
/// template, completion prompts through its tokenizer; every field range checked (400 naming the field),
/// and prompt + max_tokens checked against the context length (400 with the numbers). Thread-safe.
/// </summary>
public sealed class Preprocessor
{
    /// <summary>The most choices one request may ask for (prompts times n).</summary>
    public const int MaxChoices = 1024;

    /// <summary>OpenAI's max_tokens default for /v1/completions.</summary>
    public const int DefaultCompletionMaxTokens = 16;

    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "developer", "user", "assistant", "tool" };

    private readonly TokenizerBundle _bundle;
    private readonly int _contextLength;

    /// <param name="bundle">The model's tokenizer and chat template.</param>
    /// <param name="contextLength">The model's context length; 0 or less means unknown (no check).</param>
    public Preprocessor(TokenizerBundle bundle, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(bundle);
        _bundle = bundle;
        _contextLength = contextLength > 0 ? contextLength : int.MaxValue;
    }

    /// <summary>The model's tokenizer bundle.</summary>
    public TokenizerBundle Bundle => _bundle;

    /// <summary>Validates and tokenizes a chat request.</summary>
    public PreprocessedRequest Preprocess(ChatCompletionRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        string model = RequireModel(request.Model);
        RefuseUnsupported(request);
        if (request.Messages is not { Count: > 0 } messages)
        {
            throw OpenAiException.BadRequest("'messages' must be a non-empty array of messages.", "messages", "empty_messages");
        }

        var conversation = new List<ChatMessage>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessageRequest? m = messages[i];
            if (m is null)
            {
                throw OpenAiException.BadRequest($"'messages[{i}]' must be an object.", $"messages[{i}]");
            }

            if (m.Role is null || !Roles.Contains(m.Role))
            {
                throw OpenAiException.BadRequest($"'messages[{i}].role' must be one of system, developer, user, assistant, tool (got {(m.Role is null ? "nothing" : $"'{m.Role}'")}).", $"messages[{i}].role");
            }

            conversation.Add(new ChatMessage(m.Role, ContentText(m.Content, i)));
        }

        ChatTemplate template = _bundle.ChatTemplate
            ?? throw OpenAiException.BadRequest($"The model '{model}' has no chat template: use /v1/completions with a prompt.", "messages", "no_chat_template");
        RefuseFarOverContext(conversation.Select(m => m.Content), "messages");
        string rendered;
        try
        {
            rendered = template.RenderChat(conversation, addGenerationPrompt: true, _bundle.BosToken, _bundle.EosToken);
        }
        catch (ChatTemplateException e)
        {
            throw OpenAiException.BadRequest($"The chat template refused the messages: {e.Message}", "messages", "chat_template_error");
        }

        IReadOnlyList<int> tokens = _bundle.Tokenizer.Encode(rendered, addSpecialTokens: false);
        if (tokens.Count == 0)
        {
            throw OpenAiException.BadRequest("The messages render to an empty prompt.", "messages", "empty_messages");
        }

        string maxField = request.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        int? max = request.MaxCompletionTokens ?? request.MaxTokens;
        if (request.TopLogprobs is > 0 && request.Logprobs != true)
        {
            throw OpenAiException.BadRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
        }

        bool logprobs = request.Logprobs == true;
        SamplingParams sampling = Sampling(request, max, maxField, logprobs, request.TopLogprobs ?? 0, "top_logprobs");
        PromptInput prompt = Fit(tokens, max, maxField, defaultMax: null, "messages");
        return Build(model, request, [prompt], sampling, logprobs ? LogprobsFormat.Chat : LogprobsFormat.None);
    }

    /// <summary>Validates and tokenizes a completions request (each prompt its own choices).</summary>
    public PreprocessedRequest Preprocess(CompletionRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        string model = RequireModel(request.Model);
        RefuseUnsupported(request);
        if (request.Echo == true)
        {
            throw OpenAiException.BadRequest("'echo' is not supported by this server; send echo false or leave it out.", "echo", "unsupported_value");
        }

        if (request.BestOf is < 1)
        {
            throw OpenAiException.BadRequest($"'best_of' must be at least 1 (got {request.BestOf}).", "best_of");
        }

        if (request.BestOf is int bestOf && bestOf > Math.Max(1, request.N ?? 1))
        {
            throw OpenAiException.BadRequest($"'best_of' {bestOf} is not supported by this server (only best_of equal to n); use n to get several samples.", "best_of", "unsupported_value");
        }

        if (!string.IsNullOrEmpty(request.Suffix))
        {
            throw OpenAiException.BadRequest("'suffix' (insertion) is not supported by this server.", "suffix", "unsupported_value");
        }

        List<IReadOnlyList<int>> prompts = Prompts(request.Prompt);
        bool logprobs = request.Logprobs is not null;
        SamplingParams sampling = Sampling(request, request.MaxTokens, "max_tokens", logprobs, request.Logprobs ?? 0, "logprobs");
        var inputs = prompts.Select(p => Fit(p, request.MaxTokens, "max_tokens", DefaultCompletionMaxTokens, "prompt")).ToArray();
        return Build(model, request, inputs, sampling, logprobs ? LogprobsFormat.Completion : LogprobsFormat.None);
    }

    /// <summary>
    /// Refuses (400 context_length_exceeded) a request whose text is far over the context, without rendering
    /// or tokenizing all of it; looks only at what it can read (string contents, text parts, string prompts)
    /// and leaves every other check to <see cref="Preprocess(ChatCompletionRequest)"/>, which makes this one
    /// too. A frontend calls it before relaying a body to a Processor component.
    /// </summary>
    public void RefuseFarOverContext(OpenAiRequestBase request)
    {
        ArgumentNullException.ThrowIfNull(request);
        long threshold = (long)_contextLength * ChunkedTokenCount.LikelyMaxCharsPerToken;
        switch (request)
        {
            case ChatCompletionRequest { Messages: { } messages }:
                IEnumerable<JsonElement> contents = messages.Select(m => m?.Content).OfType<JsonElement>();
                if (contents.Sum(RawLength) > threshold)
                {
                    RefuseFarOverContext(contents.SelectMany(TextsOf), "messages");
                }

                break;
            case CompletionRequest { Prompt: JsonElement prompt } when RawLength(prompt) > threshold:
                foreach (string text in TextsOf(prompt))
                {
                    RefuseFarOverContext([text], "prompt");
                }

                break;
        }

        static long RawLength(JsonElement e) => e.ValueKind is JsonValueKind.String or JsonValueKind.Array ? JsonMarshal.GetRawUtf8Value(e).Length : 0;

        static IEnumerable<string> TextsOf(JsonElement e) => e.ValueKind switch
        {
            JsonValueKind.String => [e.GetString()!],
            JsonValueKind.Array => e.EnumerateArray().SelectMany(p => p.ValueKind switch
            {
                JsonValueKind.String => [p.GetString()!],
                JsonValueKind.Object when p.TryGetProperty("text", out JsonElement t) && t.ValueKind == JsonValueKind.String => [t.GetString()!],
                _ => Array.Empty<string>(),
            }),
            _ => [],
        };
    }

    /// <summary>The worker protocol's generate request for one choice (JSON).</summary>
    public static byte[] BuildGenerateRequest(string requestId, IReadOnlyList<int> tokenIds, SamplingParams sampling) =>
        SerializeGenerateRequest(CreateGenerateRequest(requestId, tokenIds, sampling));

    /// <summary>The worker protocol's generate request for one choice.</summary>
    public static GenerateRequest CreateGenerateRequest(string requestId, IReadOnlyList<int> tokenIds, SamplingParams sampling)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentNullException.ThrowIfNull(sampling);
        return new GenerateRequest
        {
            Version = GenerateRequest.CurrentVersion,
            RequestId = requestId,
            TokenIds = tokenIds,
            Sampling = new GenerateSampling
            {
                Temperature = sampling.Temperature,
                TopK = sampling.TopK,
                TopP = sampling.TopP,
                MinP = sampling.MinP,
                Seed = sampling.Seed,
                RepetitionPenalty = sampling.RepetitionPenalty,
                FrequencyPenalty = sampling.FrequencyPenalty,
                PresencePenalty = sampling.PresencePenalty,
                MaxTokens = sampling.MaxTokens,
                IgnoreEos = sampling.IgnoreEos,
                StopTokenIds = sampling.StopTokenIds.Count > 0 ? sampling.StopTokenIds : null,
                Logprobs = sampling.Logprobs ? true : null,
                TopLogprobs = sampling.TopLogprobs > 0 ? sampling.TopLogprobs : null,
            },
        };
    }

    /// <summary>A generate request as the JSON a worker reads.</summary>
    public static byte[] SerializeGenerateRequest(GenerateRequest request) =>
        JsonSerializer.SerializeToUtf8Bytes(request, WorkerJsonContext.Default.GenerateRequest);

    private static string RequireModel(string? model) =>
        string.IsNullOrEmpty(model) ? throw OpenAiException.BadRequest("'model' is required.", "model", "missing_model") : model;

    /// <summary>Refuses the fields both routes define but this server does not implement (a 400 naming the field, rather than silently ignoring it).</summary>
    private static void RefuseUnsupported(OpenAiRequestBase r)
    {
        if (r.LogitBias is JsonElement bias && !IsNullOrEmpty(bias))
        {
            throw Unsupported("logit_bias", "'logit_bias' is not supported by this server; leave it out (null or an empty object is accepted).");
        }

        if (r.MinTokens is JsonElement min && min.ValueKind != JsonValueKind.Null && !(min.ValueKind == JsonValueKind.Number && min.TryGetInt32(out int zero) && zero == 0))
        {
            throw Unsupported("min_tokens", "'min_tokens' is not supported by this server; leave it out (null or 0 is accepted).");
        }
    }

    /// <summary>The chat fields this server does not implement (tools, structured output): a 400 naming the field.</summary>
    private static void RefuseUnsupported(ChatCompletionRequest r)
    {
        RefuseUnsupported((OpenAiRequestBase)r);
        if (r.Tools is JsonElement tools && !IsNullOrEmpty(tools))
        {
            throw Unsupported("tools", "'tools' (tool calling) is not supported by this server; leave it out (null or an empty array is accepted).");
        }

        if (r.Functions is JsonElement functions && !IsNullOrEmpty(functions))
        {
            throw Unsupported("functions", "'functions' (function calling) is not supported by this server; leave it out (null or an empty array is accepted).");
        }

        if (r.ToolChoice is JsonElement toolChoice && !IsNullOrNone(toolChoice))
        {
            throw Unsupported("tool_choice", "'tool_choice' is not supported by this server (there is no tool calling); leave it out or send \"none\".");
        }

        if (r.FunctionCall is JsonElement functionCall && !IsNullOrNone(functionCall))
        {
            throw Unsupported("function_call", "'function_call' is not supported by this server (there is no function calling); leave it out or send \"none\".");
        }

        if (r.ResponseFormat is JsonElement format && format.ValueKind != JsonValueKind.Null
            && !(format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.ValueEquals("text")))
        {
            throw Unsupported("response_format", "'response_format' is not supported by this server (no JSON mode or schema-constrained output); leave it out or send {\"type\":\"text\"}.");
        }
    }

    private static OpenAiException Unsupported(string field, string message) => OpenAiException.BadRequest(message, field, "unsupported_value");

    private static bool IsNullOrEmpty(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Null => true,
        JsonValueKind.Array => e.GetArrayLength() == 0,
        JsonValueKind.Object => !e.EnumerateObject().Any(),
        _ => false,
    };

    private static bool IsNullOrNone(JsonElement e) => e.ValueKind == JsonValueKind.Null || (e.ValueKind == JsonValueKind.String && e.ValueEquals("none"));

    private static PreprocessedRequest Build(string model, OpenAiRequestBase request, IReadOnlyList<PromptInput> prompts, SamplingParams sampling, LogprobsFormat logprobs)
    {
        int n = request.N ?? 1;
        if (prompts.Count * n > MaxChoices)
        {
            throw OpenAiException.BadRequest($"{prompts.Count} prompts times n={n} is more than {MaxChoices} choices.", "n");
        }

        return new PreprocessedRequest
        {
            Model = model,
            Prompts = prompts,
            N = n,
            Sampling = sampling,
            Stream = request.Stream == true,
            IncludeUsage = request.Stream == true && request.StreamOptions?.IncludeUsage == true,
            Logprobs = logprobs,
            NvExt = request.NvExt,
        };
    }

    private static SamplingParams Sampling(OpenAiRequestBase r, int? maxTokens, string maxField, bool logprobs, int topLogprobs, string topField)
    {
        if (maxTokens is < 1)
        {
            throw OpenAiException.BadRequest($"'{maxField}' must be at least 1 (got {maxTokens}).", maxField);
        }

        if (r.N is < 1 or > 128)
        {
            throw OpenAiException.BadRequest($"'n' must be between 1 and 128 (got {r.N}).", "n");
        }

        if (topLogprobs is < 0 or > 20)
        {
            throw OpenAiException.BadRequest($"'{topField}' must be between 0 and 20 (got {topLogprobs}).", topField);
        }

        SamplingParams d = SamplingParams.Default;
        var sampling = new SamplingParams
        {
            Temperature = r.Temperature ?? d.Temperature,
            TopP = r.TopP ?? d.TopP,
            TopK = r.TopK ?? d.TopK,
            MinP = r.MinP ?? d.MinP,
            Seed = r.Seed is long seed ? unchecked((ulong)seed) : null,
            PresencePenalty = r.PresencePenalty ?? d.PresencePenalty,
            FrequencyPenalty = r.FrequencyPenalty ?? d.FrequencyPenalty,
            RepetitionPenalty = r.RepetitionPenalty ?? d.RepetitionPenalty,
            IgnoreEos = r.IgnoreEos ?? false,
            Stop = StopStrings(r.Stop),
            Logprobs = logprobs,
            TopLogprobs = topLogprobs,
            MaxTokens = maxTokens ?? 1,
        };
        try
        {
            return sampling.Validate();
        }
        catch (ArgumentException e)
        {
            string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
            throw OpenAiException.BadRequest($"Invalid value for '{e.ParamName}': {message}", e.ParamName);
        }
    }

    private PromptInput Fit(IReadOnlyList<int> tokens, int? maxTokens, string maxField, int? defaultMax, string promptField)
    {
        int room = _contextLength == int.MaxValue ? int.MaxValue : _contextLength - tokens.Count;
        if (maxTokens is int max)
        {
            if ((long)tokens.Count + max > _contextLength)
            {
                throw OpenAiException.BadRequest(
                    $"This model's maximum context length is {_contextLength} tokens. However, you requested {(long)tokens.Count + max} tokens ({tokens.Count} in the {(promptField == "messages" ? "messages" : "prompt")}, {max} in the completion). Please reduce the length of the {(promptField == "messages" ? "messages" : "prompt")} or of '{maxField}'.",
                    promptField, "context_length_exceeded");
            }

            return new PromptInput(tokens, max);
        }

        if (room < 1)
        {
            throw OpenAiException.BadRequest(
                $"This model's maximum context length is {_contextLength} tokens. However, the {(promptField == "messages" ? "messages" : "prompt")} has {tokens.Count} tokens, which leaves no room for the completion.",
                promptField, "context_length_exceeded");
        }

        return new PromptInput(tokens, Math.Min(room, defaultMax ?? int.MaxValue));
    }

    private static string ContentText(JsonElement? content, int index)
    {
        if (content is not JsonElement c || c.ValueKind == JsonValueKind.Null)
        {
            return "";
        }

        if (c.ValueKind == JsonValueKind.String)
        {
            return c.GetString()!;
        }

        string param = $"messages[{index}].content";
        if (c.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.BadRequest($"'{param}' must be a string or an array of text parts (got {c.ValueKind.ToString().ToLowerInvariant()}).", param, "invalid_type");
        }

        var text = new StringBuilder();
        int part = 0;
        foreach (JsonElement p in c.EnumerateArray())
        {
            if (p.ValueKind != JsonValueKind.Object || !p.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.BadRequest($"'{param}[{part}]' must be an object with a 'type'.", $"{param}[{part}]", "invalid_type");
            }

            if (type.GetString() != "text")
            {
                throw OpenAiException.BadRequest($"'{param}[{part}]' has type '{type.GetString()}': only text parts are supported.", $"{param}[{part}].type", "unsupported_content");
            }

            if (!p.TryGetProperty("text", out JsonElement t) || t.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.BadRequest($"'{param}[{part}].text' must be a string.", $"{param}[{part}].text", "invalid_type");
            }

            if (part > 0)
            {
                text.Append('\n');
            }

            text.Append(t.GetString());
            part++;
        }

        return text.ToString();
    }

    private static IReadOnlyList<string> StopStrings(JsonElement? stop)
    {
        if (stop is not JsonElement s || s.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (s.ValueKind == JsonValueKind.String)
        {
            return [s.GetString()!];
        }

        if (s.ValueKind == JsonValueKind.Array && s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
        {
            return [.. s.EnumerateArray().Select(e => e.GetString()!)];
        }

        throw OpenAiException.BadRequest("'stop' must be a string or an array of strings.", "stop", "invalid_type");
    }

    private List<IReadOnlyList<int>> Prompts(JsonElement? prompt)
    {
        const string Shape = "'prompt' must be a string, an array of strings, an array of token ids or an array of token-id arrays.";
        if (prompt is not JsonElement p || p.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.BadRequest("'prompt' is required.", "prompt", "missing_prompt");
        }

        var prompts = new List<IReadOnlyList<int>>();
        switch (p.ValueKind)
        {
            case JsonValueKind.String:
                prompts.Add(Encode(p.GetString()!));
                break;
            case JsonValueKind.Array when p.GetArrayLength() == 0:
                throw OpenAiException.BadRequest("'prompt' must not be empty.", "prompt", "empty_prompt");
            case JsonValueKind.Array:
                JsonValueKind first = p[0].ValueKind;
                if (first == JsonValueKind.Number)
                {
                    prompts.Add(TokenIds(p, "prompt"));
                }
                else if (first == JsonValueKind.String)
                {
                    foreach (JsonElement e in p.EnumerateArray())
                    {
                        prompts.Add(e.ValueKind == JsonValueKind.String ? Encode(e.GetString()!) : throw OpenAiException.BadRequest(Shape, "prompt", "invalid_type"));
                    }
                }
                else if (first == JsonValueKind.Array)
                {
                    int i = 0;
                    foreach (JsonElement e in p.EnumerateArray())
                    {
                        prompts.Add(e.ValueKind == JsonValueKind.Array ? TokenIds(e, $"prompt[{i}]") : throw OpenAiException.BadRequest(Shape, "prompt", "invalid_type"));
                        i++;
                    }
                }
                else
                {
                    throw OpenAiException.BadRequest(Shape, "prompt", "invalid_type");
                }

                break;
            default:
                throw OpenAiException.BadRequest(Shape, "prompt", "invalid_type");
        }

        if (prompts.Count > MaxChoices)
        {
            throw OpenAiException.BadRequest($"At most {MaxChoices} prompts per request (got {prompts.Count}).", "prompt");
        }

        return prompts;
    }

    /// <summary>
    /// Refuses texts far over the context before they are rendered and tokenized whole (which for megabytes of
    /// text costs hundreds of megabytes): texts longer than context x <see cref="ChunkedTokenCount.LikelyMaxCharsPerToken"/>
    /// characters are counted chunk by chunk, stopping once certainly past (<see cref="ChunkedTokenCount"/>).
    /// </summary>
    private void RefuseFarOverContext(IEnumerable<string> texts, string field)
    {
        if (_contextLength == int.MaxValue)
        {
            return;
        }

        IReadOnlyList<string> all = texts as IReadOnlyList<string> ?? [.. texts];
        long chars = all.Sum(t => (long)t.Length);
        if (chars <= (long)_contextLength * ChunkedTokenCount.LikelyMaxCharsPerToken
            || ChunkedTokenCount.CountPast(_bundle.Tokenizer, all, _contextLength - 1) is not { } past)
        {
            return;
        }

        (long tokens, long counted) = past;
        string what = field == "messages" ? "messages" : "prompt";
        throw OpenAiException.BadRequest(
            $"This model's maximum context length is {_contextLength} tokens. However, the {what} {(what == "messages" ? "have" : "has")} more: {tokens} tokens in the first {counted} of its {chars} characters (counting stopped there). Please reduce the length of the {what}.",
            field, "context_length_exceeded");
    }

    private IReadOnlyList<int> Encode(string text)
    {
        RefuseFarOverContext([text], "prompt");
        IReadOnlyList<int> ids = _bundle.Tokenizer.Encode(text, addSpecialTokens: true);
        return ids.Count > 0 ? ids : throw OpenAiException.BadRequest("'prompt' must not be empty.", "prompt", "empty_prompt");
    }

    private int[] TokenIds(JsonElement array, string param)
    {
        int vocab = _bundle.Tokenizer.VocabSize;
        var ids = new int[array.GetArrayLength()];
        if (ids.Length == 0)
        {
            throw OpenAiException.BadRequest($"'{param}' must not be empty.", param, "empty_prompt");
        }

        int i = 0;
        foreach (JsonElement e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
            {
                throw OpenAiException.BadRequest($"'{param}[{i}]' must be an integer token id.", param, "invalid_type");
            }

            if (id < 0 || id >= vocab)
            {
                throw OpenAiException.BadRequest($"'{param}[{i}]' = {id} is not a token id of this model (0..{vocab - 1}).", param);
            }

            ids[i++] = id;
        }

        return ids;
    }
}
