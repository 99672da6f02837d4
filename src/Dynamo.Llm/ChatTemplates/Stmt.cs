namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// A statement node of the template AST: text, <c>{{ expr }}</c> output, or a <c>{% tag %}</c>.
/// Execution returns how control leaves the statement (normally, or by break / continue).
/// </summary>
internal abstract class Stmt
{
    protected Stmt(int line)
    {
        Line = line;
    }

    /// <summary>How control leaves a statement.</summary>
    public enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    public int Line { get; }

    public abstract Flow Execute(RenderContext ctx);

    public static Flow ExecuteAll(IReadOnlyList<Stmt> body, RenderContext ctx)
    {
        for (int i = 0; i < body.Count; i++)
        {
            Flow flow = body[i].Execute(ctx);
            if (flow != Flow.Normal)
            {
                return flow;
            }
        }

        return Flow.Normal;
    }

    public sealed class Text(int line, string text) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            ctx.Output.Append(text);
            return Flow.Normal;
        }
    }

    public sealed class Output(int line, Expr value) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            ctx.Line = Line;
            ctx.Output.Append(PyOps.ToStr(value.Eval(ctx)));
            return Flow.Normal;
        }
    }

    public sealed class If(int line, IReadOnlyList<KeyValuePair<Expr, IReadOnlyList<Stmt>>> branches, IReadOnlyList<Stmt> otherwise) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            foreach (KeyValuePair<Expr, IReadOnlyList<Stmt>> branch in branches)
            {
                ctx.Line = branch.Key.Line;
                if (PyOps.IsTruthy(branch.Key.Eval(ctx)))
                {
                    return ExecuteAll(branch.Value, ctx);
                }
            }

            return ExecuteAll(otherwise, ctx);
        }
    }

    /// <summary><c>{% for a[, b] in items [if cond] %} ... [{% else %} ...] {% endfor %}</c>; each iteration gets a scope.</summary>
    public sealed class For(int line, IReadOnlyList<string> targets, Expr items, Expr? filter, IReadOnlyList<Stmt> body, IReadOnlyList<Stmt> otherwise) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            ctx.Line = Line;
            IReadOnlyList<object?> values = PyOps.Iterate(items.Eval(ctx));
            RenderContext.Scope outer = ctx.CurrentScope;
            if (filter is not null)
            {
                var kept = new List<object?>();
                foreach (object? v in values)
                {
                    if (ctx.WithScope(outer, () => { Bind(ctx, v); return PyOps.IsTruthy(filter.Eval(ctx)); }))
                    {
                        kept.Add(v);
                    }
                }

                values = kept;
            }

            if (values.Count == 0)
            {
                return ExecuteAll(otherwise, ctx);
            }

            var loop = new LoopContext(values);
            for (int i = 0; i < values.Count; i++)
            {
                loop.Index0 = i;
                object? value = values[i];
                Flow flow = ctx.WithScope(outer, () =>
                {
                    Bind(ctx, value);
                    ctx.Assign("loop", loop);
                    return ExecuteAll(body, ctx);
                });
                if (flow == Flow.Break)
                {
                    break;
                }
            }

            return Flow.Normal;
        }

        private void Bind(RenderContext ctx, object? value)
        {
            if (targets.Count == 1)
            {
                ctx.Assign(targets[0], value);
                return;
            }

            Unpack(ctx, targets, value);
        }
    }

    /// <summary>Assigns a sequence to several names (<c>for k, v in ...</c>, <c>set a, b = ...</c>).</summary>
    public static void Unpack(RenderContext ctx, IReadOnlyList<string> names, object? value)
    {
        if (value is not IReadOnlyList<object?> parts || parts.Count != names.Count)
        {
            throw new ChatTemplateException($"cannot unpack {PyOps.TypeName(value)} into {names.Count} names (line {ctx.Line})");
        }

        for (int i = 0; i < names.Count; i++)
        {
            ctx.Assign(names[i], parts[i]);
        }
    }

    /// <summary>Renders <paramref name="body"/> to a string and passes it through <paramref name="filters"/>.</summary>
    private static object? CaptureFiltered(RenderContext ctx, IReadOnlyList<Expr.Filter> filters, IReadOnlyList<Stmt> body)
    {
        object? value = ctx.Capture(() => ExecuteAll(body, ctx));
        foreach (Expr.Filter f in filters)
        {
            value = f.Apply(value, ctx);
        }

        return value;
    }

    /// <summary><c>{% set x = v %}</c>, <c>{% set a, b = v %}</c> or <c>{% set ns.attr = v %}</c>.</summary>
    public sealed class Set(int line, IReadOnlyList<string> targets, string? attribute, Expr value) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            ctx.Line = Line;
            object? v = value.Eval(ctx);
            if (attribute is not null)
            {
                if (ctx.Lookup(targets[0]) is not TemplateNamespace ns)
                {
                    throw new ChatTemplateException($"cannot assign attribute '{attribute}' on '{targets[0]}', which is not a namespace() (line {Line})");
                }

                ns.Attributes[attribute] = v;
            }
            else if (targets.Count == 1)
            {
                ctx.Assign(targets[0], v);
            }
            else
            {
                Unpack(ctx, targets, v);
            }

            return Flow.Normal;
        }
    }

    /// <summary><c>{% set x %}...{% endset %}</c>: captures the body's output, optionally filtered.</summary>
    public sealed class SetBlock(int line, string name, IReadOnlyList<Expr.Filter> filters, IReadOnlyList<Stmt> body) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            object? value = CaptureFiltered(ctx, filters, body);

            ctx.Assign(name, value);
            return Flow.Normal;
        }
    }

    /// <summary><c>{% filter f %}...{% endfilter %}</c>: writes the body's output through filters.</summary>
    public sealed class FilterBlock(int line, IReadOnlyList<Expr.Filter> filters, IReadOnlyList<Stmt> body) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            object? value = CaptureFiltered(ctx, filters, body);

            ctx.Output.Append(PyOps.ToStr(value));
            return Flow.Normal;
        }
    }

    /// <summary>A body executed as is (<c>{% generation %}</c>, which only marks assistant text for masks).</summary>
    public sealed class Block(int line, IReadOnlyList<Stmt> body) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx) => ExecuteAll(body, ctx);
    }

    /// <summary><c>{% macro name(a, b=default) %}...{% endmacro %}</c>: defines a callable in the current scope.</summary>
    public sealed class MacroDefinition(int line, string name, IReadOnlyList<string> parameters, IReadOnlyList<Expr?> defaults, IReadOnlyList<Stmt> body) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx)
        {
            ctx.Assign(name, new Macro(name, parameters, defaults, body, ctx.CurrentScope));
            return Flow.Normal;
        }
    }

    public sealed class LoopControl(int line, Flow flow) : Stmt(line)
    {
        public override Flow Execute(RenderContext ctx) => flow;
    }
}
