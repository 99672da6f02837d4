namespace Dynamo.Llm.ChatTemplates;

/// <summary>The mutable object made by <c>namespace(...)</c>; <c>{% set ns.attr = v %}</c> writes it,
/// which is how templates carry state out of a loop body.</summary>
internal sealed class TemplateNamespace
{
    public Dictionary<string, object?> Attributes { get; } = [];

    public override string ToString() => "<Namespace>";
}
