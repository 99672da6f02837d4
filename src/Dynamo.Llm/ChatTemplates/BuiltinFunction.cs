namespace Dynamo.Llm.ChatTemplates;

/// <summary>A global function (range, namespace, raise_exception, ...) as a template value.</summary>
internal sealed class BuiltinFunction : ICallableValue
{
    private readonly Func<CallArgs, RenderContext, object?> _body;

    public BuiltinFunction(string name, Func<CallArgs, RenderContext, object?> body)
    {
        Name = name;
        _body = body;
    }

    public string Name { get; }

    public object? Call(CallArgs args, RenderContext context) => _body(args, context);

    public override string ToString() => $"<built-in function {Name}>";
}
