namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// An expression node of the template AST. Each node evaluates itself with Python/Jinja2
/// semantics (see <see cref="PyOps"/>); the nested types are the node kinds.
/// </summary>
internal abstract class Expr
{
    protected Expr(int line)
    {
        Line = line;
    }

    public int Line { get; }

    public abstract object? Eval(RenderContext ctx);

    /// <summary>Evaluates call arguments (positional and keyword).</summary>
    public static CallArgs EvalArgs(RenderContext ctx, IReadOnlyList<Expr> args, IReadOnlyList<KeyValuePair<string, Expr>> kwargs)
    {
        if (args.Count == 0 && kwargs.Count == 0)
        {
            return CallArgs.Empty;
        }

        var positional = new object?[args.Count];
        for (int i = 0; i < args.Count; i++)
        {
            positional[i] = args[i].Eval(ctx);
        }

        Dictionary<string, object?>? keywords = null;
        if (kwargs.Count > 0)
        {
            keywords = new Dictionary<string, object?>(kwargs.Count);
            foreach (KeyValuePair<string, Expr> kv in kwargs)
            {
                keywords[kv.Key] = kv.Value.Eval(ctx);
            }
        }

        return new CallArgs(positional, keywords);
    }

    /// <summary>Jinja2's attribute lookup <c>obj.name</c> (falls back to the item, as Jinja does).</summary>
    public static object? GetAttribute(object? obj, string name) => obj switch
    {
        IReadOnlyDictionary<string, object?> dict => dict.TryGetValue(name, out object? v) ? v : new Undefined($"'dict object' has no attribute '{name}'"),
        TemplateNamespace ns => ns.Attributes.TryGetValue(name, out object? v) ? v : new Undefined($"'Namespace' object has no attribute '{name}'"),
        LoopContext loop => loop.Get(name),
        Undefined u => throw u.Fail(),
        null => new Undefined($"'None' has no attribute '{name}'"),
        _ => new Undefined($"'{PyOps.TypeName(obj)} object' has no attribute '{name}'"),
    };

    /// <summary>Jinja2's item lookup <c>obj[key]</c>: dict key, list or string index (negative from the end).</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case IReadOnlyDictionary<string, object?> dict:
                return key is string k && dict.TryGetValue(k, out object? v) ? v : new Undefined($"'dict object' has no attribute {PyOps.Repr(key)}");
            case IReadOnlyList<object?> list when key is long or bool:
                long i = key is bool b ? (b ? 1 : 0) : (long)key;
                i = i < 0 ? i + list.Count : i;
                return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"{PyOps.TypeName(obj)} object has no element {key}");
            case string s when key is long index:
                long j = index < 0 ? index + s.Length : index;
                return j >= 0 && j < s.Length ? s[(int)j].ToString() : new Undefined($"str object has no element {index}");
            case Undefined u:
                throw u.Fail();
            default:
                return key is string name ? GetAttribute(obj, name) : new Undefined($"'{PyOps.TypeName(obj)} object' has no attribute {PyOps.Repr(key)}");
        }
    }

    public sealed class Literal(int line, object? value) : Expr(line)
    {
        public object? Value { get; } = value;

        public override object? Eval(RenderContext ctx) => Value;
    }

    public sealed class Name(int line, string name) : Expr(line)
    {
        public string Identifier { get; } = name;

        public override object? Eval(RenderContext ctx) => ctx.Lookup(Identifier);
    }

    public sealed class ListLiteral(int line, IReadOnlyList<Expr> items, bool isTuple) : Expr(line)
    {
        public IReadOnlyList<Expr> Items { get; } = items;

        public bool IsTuple { get; } = isTuple;

        public override object? Eval(RenderContext ctx)
        {
            var values = new object?[Items.Count];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = Items[i].Eval(ctx);
            }

            return IsTuple ? values : new List<object?>(values);
        }
    }

    public sealed class DictLiteral(int line, IReadOnlyList<KeyValuePair<Expr, Expr>> pairs) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            var dict = new Dictionary<string, object?>(pairs.Count);
            foreach (KeyValuePair<Expr, Expr> kv in pairs)
            {
                object? key = kv.Key.Eval(ctx);
                dict[key as string ?? PyOps.ToStr(key)] = kv.Value.Eval(ctx);
            }

            return dict;
        }
    }

    public sealed class Attribute(int line, Expr target, string name) : Expr(line)
    {
        public Expr Target { get; } = target;

        public string Member { get; } = name;

        public override object? Eval(RenderContext ctx) => GetAttribute(Target.Eval(ctx), Member);
    }

    public sealed class Item(int line, Expr target, Expr key) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) => GetItem(target.Eval(ctx), key.Eval(ctx));
    }

    public sealed class Slice(int line, Expr target, Expr? start, Expr? stop, Expr? step) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            object? value = target.Eval(ctx);
            PyOps.FailIfUndefined(value);
            long? a = Bound(start, ctx), b = Bound(stop, ctx), c = Bound(step, ctx);
            return value switch
            {
                string s => string.Concat(SliceIndices(s.Length, a, b, c).Select(i => s[i])),
                object?[] tuple => SliceIndices(tuple.Length, a, b, c).Select(i => tuple[i]).ToArray(),
                IReadOnlyList<object?> list => SliceIndices(list.Count, a, b, c).Select(i => list[i]).ToList(),
                _ => throw new ChatTemplateException($"'{PyOps.TypeName(value)}' object is not subscriptable"),
            };
        }

        private static long? Bound(Expr? e, RenderContext ctx) => e?.Eval(ctx) switch
        {
            null => null,
            long l => l,
            bool flag => flag ? 1 : 0,
            object o => throw new ChatTemplateException($"slice indices must be integers or None, not {PyOps.TypeName(o)}"),
        };

        /// <summary>Python's slice.indices semantics.</summary>
        private static IEnumerable<int> SliceIndices(int length, long? start, long? stop, long? step)
        {
            long st = step ?? 1;
            if (st == 0)
            {
                throw new ChatTemplateException("slice step cannot be zero");
            }

            long Clamp(long? v, long dflt, long lo, long hi)
            {
                if (v is not long x)
                {
                    return dflt;
                }

                x = x < 0 ? x + length : x;
                return Math.Clamp(x, lo, hi);
            }

            if (st > 0)
            {
                for (long i = Clamp(start, 0, 0, length), end = Clamp(stop, length, 0, length); i < end; i += st)
                {
                    yield return (int)i;
                }
            }
            else
            {
                for (long i = Clamp(start, length - 1, -1, length - 1), end = Clamp(stop, -1, -1, length - 1); i > end; i += st)
                {
                    yield return (int)i;
                }
            }
        }
    }

    public sealed class Call(int line, Expr callee, IReadOnlyList<Expr> args, IReadOnlyList<KeyValuePair<string, Expr>> kwargs) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            if (callee is Attribute attr)
            {
                object? receiver = attr.Target.Eval(ctx);
                if (BuiltinMethods.IsMethod(receiver, attr.Member))
                {
                    return BuiltinMethods.Call(receiver, attr.Member, EvalArgs(ctx, args, kwargs));
                }

                return Invoke(GetAttribute(receiver, attr.Member), ctx);
            }

            return Invoke(callee.Eval(ctx), ctx);
        }

        private object? Invoke(object? target, RenderContext ctx) => target switch
        {
            ICallableValue f => f.Call(EvalArgs(ctx, args, kwargs), ctx),
            Undefined u => throw u.Fail(),
            _ => throw new ChatTemplateException($"'{PyOps.TypeName(target)}' object is not callable"),
        };
    }

    public sealed class Filter(int line, Expr? value, string name, BuiltinFilters.FilterFunction function, IReadOnlyList<Expr> args, IReadOnlyList<KeyValuePair<string, Expr>> kwargs) : Expr(line)
    {
        public string FilterName { get; } = name;

        public override object? Eval(RenderContext ctx) => Apply(value?.Eval(ctx), ctx);

        /// <summary>Applies the filter to a value computed elsewhere (the body of a filter block).</summary>
        public object? Apply(object? input, RenderContext ctx) => function(input, EvalArgs(ctx, args, kwargs), ctx);
    }

    public sealed class Test(int line, Expr value, BuiltinTests.TestFunction function, IReadOnlyList<Expr> args, bool negated) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) =>
            function(value.Eval(ctx), EvalArgs(ctx, args, [])) != negated;
    }

    public sealed class Not(int line, Expr operand) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) => !PyOps.IsTruthy(operand.Eval(ctx));
    }

    public sealed class Negate(int line, Expr operand, bool minus) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            object? v = operand.Eval(ctx);
            return v switch
            {
                long l => (object)(minus ? -l : l),
                double d => minus ? -d : d,
                bool b => minus ? -(b ? 1L : 0L) : (b ? 1L : 0L),
                Undefined u => throw u.Fail(),
                _ => throw new ChatTemplateException($"bad operand type for unary {(minus ? '-' : '+')}: '{PyOps.TypeName(v)}'"),
            };
        }
    }

    public sealed class Binary(int line, string op, Expr left, Expr right) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) => PyOps.Arithmetic(op, left.Eval(ctx), right.Eval(ctx));
    }

    /// <summary><c>a ~ b ~ c</c>: string concatenation of str() of each operand.</summary>
    public sealed class Concat(int line, IReadOnlyList<Expr> parts) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) => string.Concat(parts.Select(p => PyOps.ToStr(p.Eval(ctx))));
    }

    /// <summary>A comparison chain <c>a &lt; b == c</c>, with <c>in</c> and <c>not in</c>.</summary>
    public sealed class Compare(int line, Expr first, IReadOnlyList<KeyValuePair<string, Expr>> rest) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            object? left = first.Eval(ctx);
            foreach (KeyValuePair<string, Expr> step in rest)
            {
                object? right = step.Value.Eval(ctx);
                bool ok = step.Key switch
                {
                    "==" => PyOps.Equals(left, right),
                    "!=" => !PyOps.Equals(left, right),
                    "<" => PyOps.Compare(left, right) < 0,
                    "<=" => PyOps.Compare(left, right) <= 0,
                    ">" => PyOps.Compare(left, right) > 0,
                    ">=" => PyOps.Compare(left, right) >= 0,
                    "in" => PyOps.Contains(right, left),
                    _ => !PyOps.Contains(right, left),
                };
                if (!ok)
                {
                    return false;
                }

                left = right;
            }

            return true;
        }
    }

    /// <summary><c>and</c> / <c>or</c>: Python's short-circuit returning an operand.</summary>
    public sealed class Logical(int line, bool isAnd, Expr left, Expr right) : Expr(line)
    {
        public override object? Eval(RenderContext ctx)
        {
            object? l = left.Eval(ctx);
            return PyOps.IsTruthy(l) == isAnd ? right.Eval(ctx) : l;
        }
    }

    /// <summary><c>a if cond else b</c>; without <c>else</c> the result is undefined.</summary>
    public sealed class Conditional(int line, Expr condition, Expr then, Expr? otherwise) : Expr(line)
    {
        public override object? Eval(RenderContext ctx) =>
            PyOps.IsTruthy(condition.Eval(ctx))
                ? then.Eval(ctx)
                : otherwise is null ? new Undefined("the inline if expression on line " + Line + " evaluated to false and no else section was defined.") : otherwise.Eval(ctx);
    }
}
