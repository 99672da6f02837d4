namespace Dynamo.Llm.ChatTemplates;

/// <summary>A value a template can call: a global function or a macro.</summary>
internal interface ICallableValue
{
    object? Call(CallArgs args, RenderContext context);
}
