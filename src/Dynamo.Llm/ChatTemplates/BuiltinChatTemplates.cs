namespace Dynamo.Llm.ChatTemplates;

/// <summary>Chat templates the project ships, for models it synthesizes (real models bring their own).</summary>
public static class BuiltinChatTemplates
{
    /// <summary>ChatML: <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c> per message, then the assistant header.</summary>
    public const string ChatMl =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>A built-in template by name ("chatml"), or null.</summary>
    public static string? ByName(string name) => name.ToLowerInvariant() switch
    {
        "chatml" => ChatMl,
        _ => null,
    };
}
