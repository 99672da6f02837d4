namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Jinja2's default <c>Undefined</c>: a missing variable, key or attribute. It prints as nothing,
/// is falsy, iterates as empty and has length 0; anything else (attribute access, arithmetic,
/// <c>tojson</c>) fails with the reason it is undefined, as in Python.
/// </summary>
internal sealed class Undefined
{
    public Undefined(string reason)
    {
        Reason = reason;
    }

    /// <summary>Python's wording, e.g. <c>'foo' is undefined</c> or <c>'dict object' has no attribute 'x'</c>.</summary>
    public string Reason { get; }

    public ChatTemplateException Fail() => new(Reason);

    public override string ToString() => "";
}
