using System.Globalization;
using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Global functions: Jinja2's <c>range</c>, <c>namespace</c>, <c>dict</c>, and the two Hugging
/// Face adds, <c>raise_exception(message)</c> and <c>strftime_now(format)</c>.
/// </summary>
internal static class BuiltinGlobals
{
    private static readonly Dictionary<string, BuiltinFunction> Functions = new[]
    {
        new BuiltinFunction("range", (a, _) => Range(a)),
        new BuiltinFunction("namespace", (a, _) => Namespace(a)),
        new BuiltinFunction("dict", (a, _) => new Dictionary<string, object?>(a.Keywords ?? new Dictionary<string, object?>())),
        new BuiltinFunction("raise_exception", (a, _) => throw new ChatTemplateRaisedException(PyOps.ToStr(a.Get(0, "message", "")))),
        new BuiltinFunction("strftime_now", (a, ctx) => Strftime(ctx.TimeProvider.GetLocalNow(), PyOps.ToStr(a.Get(0, "format", "")))),
    }.ToDictionary(f => f.Name);

    public static bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out BuiltinFunction? function) =>
        Functions.TryGetValue(name, out function);

    private static List<object?> Range(CallArgs a)
    {
        long[] n = a.Positional.Select(v => v is long l ? l : v is bool b ? (b ? 1L : 0L) : throw new ChatTemplateException($"range() needs integers, got {PyOps.TypeName(v)}")).ToArray();
        (long start, long stop, long step) = n.Length switch
        {
            1 => (0L, n[0], 1L),
            2 => (n[0], n[1], 1L),
            3 => (n[0], n[1], n[2]),
            _ => throw new ChatTemplateException($"range expected 1 to 3 arguments, got {n.Length}"),
        };
        if (step == 0)
        {
            throw new ChatTemplateException("range() arg 3 must not be zero");
        }

        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (result.Count >= 100_000)
            {
                throw new ChatTemplateException("range too big (more than 100000 items)");
            }

            result.Add(i);
        }

        return result;
    }

    private static TemplateNamespace Namespace(CallArgs a)
    {
        var ns = new TemplateNamespace();
        foreach (object? p in a.Positional)
        {
            if (p is not IReadOnlyDictionary<string, object?> d)
            {
                throw new ChatTemplateException($"namespace() positional arguments must be dicts, got {PyOps.TypeName(p)}");
            }

            foreach (KeyValuePair<string, object?> kv in d)
            {
                ns.Attributes[kv.Key] = kv.Value;
            }
        }

        foreach (KeyValuePair<string, object?> kv in a.Keywords ?? new Dictionary<string, object?>())
        {
            ns.Attributes[kv.Key] = kv.Value;
        }

        return ns;
    }

    /// <summary>C <c>strftime</c> as Python calls it (C locale), for the common directives.</summary>
    public static string Strftime(DateTimeOffset t, string format)
    {
        var sb = new StringBuilder();
        CultureInfo c = CultureInfo.InvariantCulture;
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }

            char d = format[++i];
            bool noPad = d == '-' && i + 1 < format.Length;
            if (noPad)
            {
                d = format[++i];
            }

            string pad2(int v) => v.ToString(noPad ? "0" : "00", c);
            sb.Append(d switch
            {
                'Y' => t.Year.ToString(c),
                'y' => pad2(t.Year % 100),
                'm' => pad2(t.Month),
                'd' => pad2(t.Day),
                'e' => t.Day.ToString(c).PadLeft(2),
                'H' => pad2(t.Hour),
                'I' => pad2(t.Hour % 12 == 0 ? 12 : t.Hour % 12),
                'M' => pad2(t.Minute),
                'S' => pad2(t.Second),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' or 'h' => t.ToString("MMM", c),
                'B' => t.ToString("MMMM", c),
                'a' => t.ToString("ddd", c),
                'A' => t.ToString("dddd", c),
                'j' => t.DayOfYear.ToString(noPad ? "0" : "000", c),
                'w' => ((int)t.DayOfWeek).ToString(c),
                'F' => t.ToString("yyyy-MM-dd", c),
                'T' => t.ToString("HH:mm:ss", c),
                '%' => "%",
                _ => throw new ChatTemplateException($"strftime directive '%{d}' is not supported"),
            });
        }

        return sb.ToString();
    }
}
