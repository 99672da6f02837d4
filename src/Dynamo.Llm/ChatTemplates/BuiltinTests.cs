namespace Dynamo.Llm.ChatTemplates;

/// <summary>The <c>is</c> tests templates may use (Jinja2's names and aliases).</summary>
internal static class BuiltinTests
{
    public delegate bool TestFunction(object? value, CallArgs args);

    private static readonly Dictionary<string, TestFunction> Tests = new()
    {
        ["defined"] = (v, _) => v is not Undefined,
        ["undefined"] = (v, _) => v is Undefined,
        ["none"] = (v, _) => v is null,
        ["string"] = (v, _) => v is string,
        ["number"] = (v, _) => v is long or double or bool,
        ["integer"] = (v, _) => v is long,
        ["float"] = (v, _) => v is double,
        ["boolean"] = (v, _) => v is bool,
        ["true"] = (v, _) => v is true,
        ["false"] = (v, _) => v is false,
        ["mapping"] = (v, _) => v is IReadOnlyDictionary<string, object?>,
        ["sequence"] = (v, _) => v is string or IReadOnlyList<object?> or IReadOnlyDictionary<string, object?>,
        ["iterable"] = (v, _) => v is string or IReadOnlyList<object?> or IReadOnlyDictionary<string, object?>,
        ["callable"] = (v, _) => v is ICallableValue,
        ["even"] = (v, _) => Integer(v, "even") % 2 == 0,
        ["odd"] = (v, _) => Integer(v, "odd") % 2 != 0,
        ["divisibleby"] = (v, a) => Integer(v, "divisibleby") % Integer(Arg(a, "divisibleby"), "divisibleby") == 0,
        ["lower"] = (v, _) => v is string s && s == s.ToLowerInvariant(),
        ["upper"] = (v, _) => v is string s && s == s.ToUpperInvariant(),
        ["sameas"] = (v, a) => Arg(a, "sameas") is var o && (v is null ? o is null : v is bool b ? o is bool ob && b == ob : ReferenceEquals(v, o)),
        ["in"] = (v, a) => PyOps.Contains(Arg(a, "in"), v),
    };

    static BuiltinTests()
    {
        Alias(["eq", "equalto", "=="], (v, a) => PyOps.Equals(v, Arg(a, "eq")));
        Alias(["ne", "!="], (v, a) => !PyOps.Equals(v, Arg(a, "ne")));
        Alias(["lt", "lessthan", "<"], (v, a) => PyOps.Compare(v, Arg(a, "lt")) < 0);
        Alias(["le", "<="], (v, a) => PyOps.Compare(v, Arg(a, "le")) <= 0);
        Alias(["gt", "greaterthan", ">"], (v, a) => PyOps.Compare(v, Arg(a, "gt")) > 0);
        Alias(["ge", ">="], (v, a) => PyOps.Compare(v, Arg(a, "ge")) >= 0);
    }

    public static bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TestFunction? test) =>
        Tests.TryGetValue(name, out test);

    private static void Alias(string[] names, TestFunction test)
    {
        foreach (string n in names)
        {
            Tests[n] = test;
        }
    }

    private static object? Arg(CallArgs args, string test) =>
        args.Count > 0 ? args.Positional[0] : throw new ChatTemplateException($"test '{test}' needs an argument");

    private static long Integer(object? v, string test) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d when d == Math.Floor(d) => (long)d,
        Undefined u => throw u.Fail(),
        _ => throw new ChatTemplateException($"test '{test}' needs an integer, got {PyOps.TypeName(v)}"),
    };
}
