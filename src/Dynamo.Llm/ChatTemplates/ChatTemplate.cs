namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// A parsed Jinja2 chat template (the <c>chat_template</c> of a Hugging Face
/// <c>tokenizer_config.json</c>), rendered the way <c>transformers</c>' <c>apply_chat_template</c>
/// renders it: <c>trim_blocks</c>, <c>lstrip_blocks</c>, loop controls, <c>tojson</c> as
/// <c>json.dumps(ensure_ascii=False)</c>, and the globals <c>raise_exception</c> and
/// <c>strftime_now</c>. Parse once and render many times; a template holds no render state, so
/// one instance may render on several threads at once.
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<Stmt> _body;

    private ChatTemplate(string source, IReadOnlyList<Stmt> body)
    {
        Source = source;
        _body = body;
    }

    /// <summary>The template text as given to <see cref="Parse"/>.</summary>
    public string Source { get; }

    /// <summary>Parses a template; syntax errors and unknown tags, filters or tests throw <see cref="ChatTemplateException"/>.</summary>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, TemplateParser.Parse(source));
    }

    /// <summary>
    /// Renders with the given variables. Values may be <c>null</c>, string, bool, int/long,
    /// float/double, lists, string-keyed dictionaries, <see cref="System.Text.Json.JsonElement"/>
    /// or <see cref="ChatMessage"/>. <paramref name="timeProvider"/> feeds <c>strftime_now</c>
    /// (default: the system clock).
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> context, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var variables = new Dictionary<string, object?>(context.Count);
        foreach (KeyValuePair<string, object?> kv in context)
        {
            variables[kv.Key] = ChatTemplateValue.Normalize(kv.Value);
        }

        var ctx = new RenderContext(variables, timeProvider ?? TimeProvider.System);
        try
        {
            Stmt.ExecuteAll(_body, ctx);
        }
        catch (ChatTemplateRaisedException)
        {
            throw;
        }
        catch (ChatTemplateException e) when (!e.Message.Contains("(line ", StringComparison.Ordinal))
        {
            throw new ChatTemplateException($"{e.Message} (line {ctx.Line})", e);
        }

        return ctx.Output.ToString();
    }

    /// <summary>
    /// Renders a conversation: sets <c>messages</c>, <c>add_generation_prompt</c>,
    /// <c>bos_token</c>, <c>eos_token</c>, and <c>tools</c> / <c>documents</c> as None, then
    /// applies <paramref name="extra"/> (which may override any of them, e.g. <c>tools</c> or
    /// <c>enable_thinking</c>).
    /// </summary>
    public string RenderChat(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        string? bosToken,
        string? eosToken,
        IReadOnlyDictionary<string, object?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var context = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bosToken ?? "",
            ["eos_token"] = eosToken ?? "",
            ["tools"] = null,
            ["documents"] = null,
        };
        if (extra is not null)
        {
            foreach (KeyValuePair<string, object?> kv in extra)
            {
                context[kv.Key] = kv.Value;
            }
        }

        return Render(context);
    }
}
