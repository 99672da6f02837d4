using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// The state of one render: the output buffer, the variable scopes and the template line being
/// executed (for error messages). Scopes form a chain: the root holds the caller's context, each
/// for-loop iteration and macro call pushes one, so <c>set</c> inside a loop body does not leak
/// out of it (Jinja2's rule; <c>namespace()</c> objects carry state across).
/// </summary>
internal sealed class RenderContext
{
    private Scope _scope;

    public RenderContext(Dictionary<string, object?> variables, TimeProvider timeProvider)
    {
        _scope = new Scope(variables, null);
        TimeProvider = timeProvider;
    }

    public StringBuilder Output { get; set; } = new();

    public TimeProvider TimeProvider { get; }

    /// <summary>The template line of the statement being executed.</summary>
    public int Line { get; set; }

    /// <summary>The innermost scope; a macro captures it to resolve names when called.</summary>
    public Scope CurrentScope => _scope;

    public object? Lookup(string name)
    {
        for (Scope? s = _scope; s is not null; s = s.Parent)
        {
            if (s.Variables.TryGetValue(name, out object? v))
            {
                return v;
            }
        }

        return BuiltinGlobals.TryGet(name, out BuiltinFunction? f) ? f : new Undefined($"'{name}' is undefined");
    }

    public void Assign(string name, object? value) => _scope.Variables[name] = value;

    /// <summary>How deeply scopes may nest (macro recursion) before the render fails instead of overflowing the stack.</summary>
    public const int MaxDepth = 200;

    private int _depth;

    /// <summary>Runs <paramref name="body"/> in a new scope whose parent is <paramref name="parent"/>.</summary>
    public T WithScope<T>(Scope parent, Func<T> body)
    {
        if (_depth >= MaxDepth)
        {
            throw new ChatTemplateException($"template nesting deeper than {MaxDepth} (recursive macro?)");
        }

        Scope saved = _scope;
        _scope = new Scope([], parent);
        _depth++;
        try
        {
            return body();
        }
        finally
        {
            _scope = saved;
            _depth--;
        }
    }

    /// <summary>Runs <paramref name="body"/> writing into a fresh buffer and returns what it wrote.</summary>
    public string Capture(Action body)
    {
        StringBuilder saved = Output;
        Output = new StringBuilder();
        try
        {
            body();
            return Output.ToString();
        }
        finally
        {
            Output = saved;
        }
    }

    /// <summary>One level of variables.</summary>
    internal sealed record Scope(Dictionary<string, object?> Variables, Scope? Parent);
}
