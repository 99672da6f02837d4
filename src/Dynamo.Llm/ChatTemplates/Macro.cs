namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// A macro defined with <c>{% macro %}</c>. A call binds positional then keyword arguments
/// (missing ones take their defaults, else are undefined), runs the body in a scope whose parent
/// is the scope where the macro was defined, and returns the body's output.
/// </summary>
internal sealed class Macro : ICallableValue
{
    private readonly string _name;
    private readonly IReadOnlyList<string> _parameters;
    private readonly IReadOnlyList<Expr?> _defaults;
    private readonly IReadOnlyList<Stmt> _body;
    private readonly RenderContext.Scope _closure;

    public Macro(string name, IReadOnlyList<string> parameters, IReadOnlyList<Expr?> defaults, IReadOnlyList<Stmt> body, RenderContext.Scope closure)
    {
        _name = name;
        _parameters = parameters;
        _defaults = defaults;
        _body = body;
        _closure = closure;
    }

    public object? Call(CallArgs args, RenderContext context)
    {
        if (args.Count > _parameters.Count)
        {
            throw new ChatTemplateException($"macro '{_name}' takes not more than {_parameters.Count} argument(s)");
        }

        return context.WithScope(_closure, () =>
        {
            for (int i = 0; i < _parameters.Count; i++)
            {
                string p = _parameters[i];
                object? value = args.Has(i, p)
                    ? args.Get(i, p)
                    : _defaults[i] is Expr d ? d.Eval(context) : new Undefined($"'{p}' is undefined");
                context.Assign(p, value);
            }

            return context.Capture(() => Stmt.ExecuteAll(_body, context));
        });
    }

    public override string ToString() => $"<Macro '{_name}'>";
}
