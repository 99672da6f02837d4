namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// A chat template that cannot be parsed or rendered: a syntax error, an unsupported construct
/// (unknown tag, filter, test or method), a type error at render time, or a call of the
/// template's <c>raise_exception</c> (see <see cref="ChatTemplateRaisedException"/>).
/// The message is one line; where the template position is known it names the line.
/// </summary>
public class ChatTemplateException : Exception
{
    public ChatTemplateException(string message)
        : base(message)
    {
    }

    public ChatTemplateException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
