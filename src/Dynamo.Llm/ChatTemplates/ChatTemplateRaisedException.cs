namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// The template called <c>raise_exception(message)</c>, typically to reject a conversation
/// (for example roles that do not alternate). <see cref="Exception.Message"/> reads exactly as
/// Python's <c>"TemplateError: " + message</c>; <see cref="TemplateMessage"/> is the bare text.
/// </summary>
public sealed class ChatTemplateRaisedException : ChatTemplateException
{
    public ChatTemplateRaisedException(string templateMessage)
        : base("TemplateError: " + templateMessage)
    {
        TemplateMessage = templateMessage;
    }

    /// <summary>The argument the template passed to <c>raise_exception</c>.</summary>
    public string TemplateMessage { get; }
}
