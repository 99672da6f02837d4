using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// The filters templates may use, with Jinja2 3.1's behaviour (and Hugging Face's <c>tojson</c>).
/// An unknown filter is rejected at parse time.
/// </summary>
internal static partial class BuiltinFilters
{
    public delegate object? FilterFunction(object? value, CallArgs args, RenderContext ctx);

    private static readonly Dictionary<string, FilterFunction> Filters = new()
    {
        ["trim"] = (v, a, _) => a.Get(0, "chars") is string chars ? PyOps.ToStr(v).Trim(chars.ToCharArray()) : PyOps.ToStr(v).Trim(),
        ["tojson"] = ToJson,
        ["length"] = (v, _, _) => PyOps.Length(v),
        ["count"] = (v, _, _) => PyOps.Length(v),
        ["upper"] = (v, _, _) => PyOps.ToStr(v).ToUpperInvariant(),
        ["lower"] = (v, _, _) => PyOps.ToStr(v).ToLowerInvariant(),
        ["title"] = (v, _, _) => Title(PyOps.ToStr(v)),
        ["capitalize"] = (v, _, _) => Capitalize(PyOps.ToStr(v)),
        ["first"] = (v, _, _) => PyOps.Iterate(v) is { Count: > 0 } items ? items[0] : new Undefined("No first item, sequence was empty."),
        ["last"] = (v, _, _) => PyOps.Iterate(v) is { Count: > 0 } items ? items[^1] : new Undefined("No last item, sequence was empty."),
        ["join"] = Join,
        ["default"] = Default,
        ["d"] = Default,
        ["replace"] = Replace,
        ["string"] = (v, _, _) => PyOps.ToStr(v),
        ["int"] = ToInt,
        ["float"] = ToFloat,
        ["list"] = (v, _, _) => new List<object?>(PyOps.Iterate(v)),
        ["items"] = Items,
        ["selectattr"] = (v, a, ctx) => SelectAttr(v, a, keep: true),
        ["rejectattr"] = (v, a, ctx) => SelectAttr(v, a, keep: false),
        ["select"] = (v, a, ctx) => Select(v, a, keep: true),
        ["reject"] = (v, a, ctx) => Select(v, a, keep: false),
        ["map"] = Map,
        ["unique"] = Unique,
        ["reverse"] = (v, _, _) => v is string s ? new string(s.Reverse().ToArray()) : PyOps.Iterate(v).Reverse().ToList(),
        ["sort"] = Sort,
        ["dictsort"] = DictSort,
        ["safe"] = (v, _, _) => v,
        ["abs"] = Abs,
        ["round"] = Round,
        ["indent"] = Indent,
        ["wordcount"] = (v, _, _) => (long)WordRegex().Count(PyOps.ToStr(v)),
        ["max"] = (v, a, _) => MinMax(v, a, max: true),
        ["min"] = (v, a, _) => MinMax(v, a, max: false),
        ["sum"] = Sum,
    };

    public static bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out FilterFunction? filter) =>
        Filters.TryGetValue(name, out filter);

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRegex();

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginningRegex();

    private static object? ToJson(object? v, CallArgs a, RenderContext ctx)
    {
        int? indent = a.Get(0, "indent") switch
        {
            null => null,
            long l => (int)l,
            object o => throw new ChatTemplateException($"tojson indent must be an integer, got {PyOps.TypeName(o)}"),
        };
        string? itemSep = null, keySep = null;
        if (a.Get(2, "separators") is IReadOnlyList<object?> { Count: 2 } seps)
        {
            itemSep = PyOps.ToStr(seps[0]);
            keySep = PyOps.ToStr(seps[1]);
        }

        return PyJson.Dumps(v, indent, itemSep, keySep, PyOps.IsTruthy(a.Get(3, "sort_keys")));
    }

    /// <summary>Jinja2's title filter: upper-cases the first letter of each word (words split at spaces, dashes, brackets).</summary>
    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (string item in WordBeginningRegex().Split(s))
        {
            if (item.Length > 0)
            {
                sb.Append(char.ToUpperInvariant(item[0])).Append(item.AsSpan(1).ToString().ToLowerInvariant());
            }
        }

        return sb.ToString();
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static object? Join(object? v, CallArgs a, RenderContext ctx)
    {
        string separator = PyOps.ToStr(a.Get(0, "d", ""));
        IEnumerable<object?> items = PyOps.Iterate(v);
        if (a.Get(1, "attribute") is object attribute)
        {
            items = items.Select(x => AttributeOf(x, attribute));
        }

        return string.Join(separator, items.Select(PyOps.ToStr));
    }

    private static object? Default(object? v, CallArgs a, RenderContext ctx)
    {
        bool boolean = PyOps.IsTruthy(a.Get(1, "boolean", false));
        return v is Undefined || (boolean && !PyOps.IsTruthy(v)) ? a.Get(0, "default_value", "") : v;
    }

    private static object? Replace(object? v, CallArgs a, RenderContext ctx)
    {
        string s = PyOps.ToStr(v);
        string old = PyOps.ToStr(a.Get(0, "old")), replacement = PyOps.ToStr(a.Get(1, "new"));
        return a.Get(2, "count") is long count ? BuiltinMethods.ReplaceCount(s, old, replacement, count) : BuiltinMethods.ReplaceCount(s, old, replacement, -1);
    }

    private static object? ToInt(object? v, CallArgs a, RenderContext ctx)
    {
        object? fallback = a.Get(0, "default", 0L);
        return v switch
        {
            long l => l,
            bool b => b ? 1L : 0L,
            double d when !double.IsNaN(d) && !double.IsInfinity(d) => (long)Math.Truncate(d),
            string s when long.TryParse(s.Trim().Replace("_", "", StringComparison.Ordinal), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) => l,
            string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && !double.IsNaN(d) && !double.IsInfinity(d) => (long)Math.Truncate(d),
            _ => fallback,
        };
    }

    private static object? ToFloat(object? v, CallArgs a, RenderContext ctx)
    {
        object? fallback = a.Get(0, "default", 0.0);
        return v switch
        {
            long l => (double)l,
            bool b => b ? 1.0 : 0.0,
            double d => d,
            string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
            _ => fallback,
        };
    }

    private static object? Items(object? v, CallArgs a, RenderContext ctx) => v switch
    {
        IReadOnlyDictionary<string, object?> dict => dict.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList(),
        Undefined => new List<object?>(),
        _ => throw new ChatTemplateException($"Can only get item pairs from a mapping, not {PyOps.TypeName(v)}"),
    };

    /// <summary>Jinja2's attribute getter for filters: a dotted path of keys or indexes.</summary>
    private static object? AttributeOf(object? item, object attribute)
    {
        if (attribute is long index)
        {
            return Expr.GetItem(item, index);
        }

        foreach (string part in PyOps.ToStr(attribute).Split('.'))
        {
            item = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long i) ? Expr.GetItem(item, i) : Expr.GetItem(item, part);
        }

        return item;
    }

    /// <summary>Runs the named test with the remaining arguments (or truthiness when no test is named).</summary>
    private static bool RunTest(object? value, CallArgs a, int testIndex)
    {
        if (a.Count <= testIndex)
        {
            return PyOps.IsTruthy(value);
        }

        string name = PyOps.ToStr(a.Positional[testIndex]);
        if (!BuiltinTests.TryGet(name, out BuiltinTests.TestFunction? test))
        {
            throw new ChatTemplateException($"No test named '{name}'.");
        }

        return test(value, new CallArgs(a.Positional.Skip(testIndex + 1).ToArray(), null));
    }

    private static List<object?> SelectAttr(object? v, CallArgs a, bool keep)
    {
        object attribute = a.Get(0, "attr") ?? throw new ChatTemplateException("selectattr/rejectattr need an attribute name");
        return PyOps.Iterate(v).Where(x => RunTest(AttributeOf(x, attribute), a, 1) == keep).ToList();
    }

    private static List<object?> Select(object? v, CallArgs a, bool keep) =>
        PyOps.Iterate(v).Where(x => RunTest(x, a, 0) == keep).ToList();

    private static object? Map(object? v, CallArgs a, RenderContext ctx)
    {
        IReadOnlyList<object?> items = PyOps.Iterate(v);
        if (a.Keywords is not null && a.Keywords.TryGetValue("attribute", out object? attribute) && attribute is not null)
        {
            bool hasDefault = a.Keywords.TryGetValue("default", out object? fallback);
            return items.Select(x => AttributeOf(x, attribute) is Undefined && hasDefault ? fallback : AttributeOf(x, attribute)).ToList();
        }

        if (a.Count == 0)
        {
            throw new ChatTemplateException("map needs a filter name or attribute=");
        }

        string name = PyOps.ToStr(a.Positional[0]);
        if (!TryGet(name, out FilterFunction? filter))
        {
            throw new ChatTemplateException($"No filter named '{name}'.");
        }

        var rest = new CallArgs(a.Positional.Skip(1).ToArray(), a.Keywords);
        return items.Select(x => filter(x, rest, ctx)).ToList();
    }

    private static object? Unique(object? v, CallArgs a, RenderContext ctx)
    {
        bool caseSensitive = PyOps.IsTruthy(a.Get(0, "case_sensitive", false));
        object? attribute = a.Get(1, "attribute");
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (object? item in PyOps.Iterate(v))
        {
            object? key = SortKey(attribute is null ? item : AttributeOf(item, attribute), caseSensitive);
            if (!seen.Any(s => PyOps.Equals(s, key)))
            {
                seen.Add(key);
                result.Add(item);
            }
        }

        return result;
    }

    private static object? SortKey(object? v, bool caseSensitive) =>
        !caseSensitive && v is string s ? s.ToLowerInvariant() : v;

    private static object? Sort(object? v, CallArgs a, RenderContext ctx)
    {
        bool reverse = PyOps.IsTruthy(a.Get(0, "reverse", false));
        bool caseSensitive = PyOps.IsTruthy(a.Get(1, "case_sensitive", false));
        object? attribute = a.Get(2, "attribute");
        var items = new List<object?>(PyOps.Iterate(v));
        object? Key(object? x) => SortKey(attribute is null ? x : AttributeOf(x, attribute), caseSensitive);

        return StableSort(items, (p, q) => PyOps.Compare(Key(p), Key(q)), reverse);
    }

    /// <summary>Python's stable sort; a comparison error surfaces as the template error it is.</summary>
    private static List<object?> StableSort(IReadOnlyList<object?> items, Comparison<object?> compare, bool reverse)
    {
        var indexed = items.Select((x, i) => (X: x, I: i)).ToArray();
        try
        {
            Array.Sort(indexed, (p, q) =>
            {
                int c = compare(p.X, q.X);
                return c != 0 ? (reverse ? -c : c) : p.I.CompareTo(q.I);
            });
        }
        catch (InvalidOperationException e) when (e.InnerException is ChatTemplateException inner)
        {
            throw inner;
        }

        return indexed.Select(p => p.X).ToList();
    }

    /// <summary>Jinja2's dictsort: the (key, value) pairs sorted by key (or by value with by='value').</summary>
    private static object? DictSort(object? v, CallArgs a, RenderContext ctx)
    {
        if (v is not IReadOnlyDictionary<string, object?> dict)
        {
            throw new ChatTemplateException($"dictsort needs a mapping, got {PyOps.TypeName(v)}");
        }

        bool caseSensitive = PyOps.IsTruthy(a.Get(0, "case_sensitive", false));
        int position = PyOps.ToStr(a.Get(1, "by", "key")) switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new ChatTemplateException("You can only sort by either 'key' or 'value'"),
        };
        List<object?> pairs = dict.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList();
        return StableSort(
            pairs,
            (p, q) => PyOps.Compare(SortKey(((object?[])p!)[position], caseSensitive), SortKey(((object?[])q!)[position], caseSensitive)),
            PyOps.IsTruthy(a.Get(2, "reverse", false)));
    }

    private static object? Abs(object? v, CallArgs a, RenderContext ctx) => v switch
    {
        long l => (object)Math.Abs(l),
        double d => Math.Abs(d),
        bool b => b ? 1L : 0L,
        _ => throw new ChatTemplateException($"bad operand type for abs(): '{PyOps.TypeName(v)}'"),
    };

    private static object? Round(object? v, CallArgs a, RenderContext ctx)
    {
        int precision = a.Get(0, "precision", 0L) is long p ? (int)p : 0;
        string method = PyOps.ToStr(a.Get(1, "method", "common"));
        double x = v switch
        {
            long l => l,
            double d => d,
            bool b => b ? 1 : 0,
            _ => throw new ChatTemplateException($"round needs a number, got {PyOps.TypeName(v)}"),
        };
        double factor = Math.Pow(10, precision);
        return method switch
        {
            "common" when v is long l && precision >= 0 => (object)l,
            "common" => RoundHalfEven(x, precision),
            "ceil" => Math.Ceiling(x * factor) / factor,
            "floor" => Math.Floor(x * factor) / factor,
            _ => throw new ChatTemplateException("method must be 'common', 'ceil' or 'floor'"),
        };
    }

    /// <summary>
    /// Python's <c>round(x, n)</c>: correctly rounded from the exact binary value (so 2.675 gives
    /// 2.67), ties (exact halves) to even.
    /// </summary>
    private static double RoundHalfEven(double x, int precision)
    {
        if (double.IsNaN(x) || double.IsInfinity(x) || precision < 0 || precision > 300)
        {
            return Math.Round(x, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven);
        }

        // .NET formats the exact binary expansion; 1100 digits cover every double.
        string exact = x.ToString("F" + (precision + 1100).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        int cut = exact.IndexOf('.', StringComparison.Ordinal) + 1 + precision;
        bool tie = exact[cut] == '5' && exact.AsSpan(cut + 1).TrimEnd('0').Length == 0;
        if (tie)
        {
            return Math.Round(x, precision, MidpointRounding.ToEven);
        }

        return double.Parse(x.ToString("F" + precision.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    private static object? Indent(object? v, CallArgs a, RenderContext ctx)
    {
        object? width = a.Get(0, "width", 4L);
        string indentation = width is string w ? w : new string(' ', width is long n ? (int)n : 4);
        bool first = PyOps.IsTruthy(a.Get(1, "first", false));
        bool blank = PyOps.IsTruthy(a.Get(2, "blank", false));
        string s = PyOps.ToStr(v) + "\n";
        List<string> lines = [.. s.Split('\n')];
        lines.RemoveAt(lines.Count - 1);
        string result;
        if (blank)
        {
            result = string.Join("\n" + indentation, lines);
        }
        else
        {
            result = lines[0];
            if (lines.Count > 1)
            {
                result += "\n" + string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indentation + line : line));
            }
        }

        return first ? indentation + result : result;
    }

    private static object? MinMax(object? v, CallArgs a, bool max)
    {
        IReadOnlyList<object?> items = PyOps.Iterate(v);
        if (items.Count == 0)
        {
            return new Undefined("No aggregated item, sequence was empty.");
        }

        bool caseSensitive = PyOps.IsTruthy(a.Get(0, "case_sensitive", false));
        object? attribute = a.Get(1, "attribute");
        object? best = items[0];
        foreach (object? item in items.Skip(1))
        {
            int c = PyOps.Compare(
                SortKey(attribute is null ? item : AttributeOf(item, attribute), caseSensitive),
                SortKey(attribute is null ? best : AttributeOf(best, attribute), caseSensitive));
            if (max ? c > 0 : c < 0)
            {
                best = item;
            }
        }

        return best;
    }

    private static object? Sum(object? v, CallArgs a, RenderContext ctx)
    {
        object? attribute = a.Get(0, "attribute");
        object? total = a.Get(1, "start", 0L);
        foreach (object? item in PyOps.Iterate(v))
        {
            total = PyOps.Arithmetic("+", total, attribute is null ? item : AttributeOf(item, attribute));
        }

        return total;
    }
}
