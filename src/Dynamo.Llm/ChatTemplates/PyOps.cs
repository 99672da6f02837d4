using System.Globalization;
using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Python semantics for template values: truthiness, <c>str()</c> and <c>repr()</c>, equality,
/// ordering and arithmetic. Values are <c>null</c> (None), <see cref="bool"/>, <see cref="long"/>,
/// <see cref="double"/>, <see cref="string"/>, lists (<c>List&lt;object?&gt;</c>; tuples are
/// <c>object?[]</c>), dicts (<c>IReadOnlyDictionary&lt;string, object?&gt;</c>, insertion ordered),
/// <see cref="Undefined"/> and the runtime objects (namespace, loop, callables).
/// </summary>
internal static class PyOps
{
    public static bool IsTruthy(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        Undefined => false,
        IReadOnlyList<object?> list => list.Count > 0,
        IReadOnlyDictionary<string, object?> dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python's type name, for error messages.</summary>
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        object?[] => "tuple",
        IReadOnlyList<object?> => "list",
        IReadOnlyDictionary<string, object?> => "dict",
        Undefined => "Undefined",
        TemplateNamespace => "Namespace",
        LoopContext => "LoopContext",
        _ => "function",
    };

    /// <summary>Python <c>str(v)</c>; Undefined prints as nothing.</summary>
    public static string ToStr(object? v) => v switch
    {
        string s => s,
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FormatFloat(d),
        Undefined => "",
        IReadOnlyList<object?> or IReadOnlyDictionary<string, object?> => Repr(v),
        _ => v.ToString() ?? "",
    };

    /// <summary>Python <c>repr(v)</c>, as used when lists and dicts are printed.</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case string s:
                AppendStringRepr(sb, s);
                break;
            case object?[] tuple:
                sb.Append('(');
                for (int i = 0; i < tuple.Length; i++)
                {
                    sb.Append(i > 0 ? ", " : "");
                    AppendRepr(sb, tuple[i]);
                }

                sb.Append(tuple.Length == 1 ? ",)" : ")");
                break;
            case IReadOnlyList<object?> list:
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    sb.Append(i > 0 ? ", " : "");
                    AppendRepr(sb, list[i]);
                }

                sb.Append(']');
                break;
            case IReadOnlyDictionary<string, object?> dict:
                sb.Append('{');
                bool first = true;
                foreach (KeyValuePair<string, object?> kv in dict)
                {
                    sb.Append(first ? "" : ", ");
                    first = false;
                    AppendStringRepr(sb, kv.Key);
                    sb.Append(": ");
                    AppendRepr(sb, kv.Value);
                }

                sb.Append('}');
                break;
            default:
                sb.Append(ToStr(v));
                break;
        }
    }

    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        sb.Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote)
                    {
                        sb.Append('\\').Append(c);
                    }
                    else if (c < 0x20 || c == 0x7f)
                    {
                        sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        sb.Append(quote);
    }

    /// <summary>Python <c>repr(float)</c>: shortest round-trip digits, <c>1.0</c>, <c>1e+16</c>, <c>1e-05</c>, <c>inf</c>, <c>nan</c>.</summary>
    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }

        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }

        if (d == 0)
        {
            return double.IsNegative(d) ? "-0.0" : "0.0";
        }

        // Shortest round-trip digits and decimal exponent, then Python's layout rules.
        string shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int e = shortest.IndexOf('E', StringComparison.Ordinal);
        string mantissa = e >= 0 ? shortest[..e] : shortest;
        int mantissaExp = e >= 0 ? int.Parse(shortest[(e + 1)..], CultureInfo.InvariantCulture) : 0;
        int dot = mantissa.IndexOf('.', StringComparison.Ordinal);
        string intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        string fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        string all = (intPart + fracPart).TrimStart('0');
        int leadingZeros = (intPart + fracPart).Length - all.Length;
        string digits = all.TrimEnd('0');
        int exp = intPart.Length - 1 - leadingZeros + mantissaExp;

        var sb = new StringBuilder();
        if (d < 0)
        {
            sb.Append('-');
        }

        if (exp < -4 || exp >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
            {
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            }

            sb.Append('e').Append(exp < 0 ? '-' : '+').Append(Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (exp < 0)
        {
            sb.Append("0.").Append('0', -exp - 1).Append(digits);
        }
        else if (digits.Length <= exp + 1)
        {
            sb.Append(digits).Append('0', exp + 1 - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, exp + 1).Append('.').Append(digits, exp + 1, digits.Length - exp - 1);
        }

        return sb.ToString();
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    private static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException(),
    };

    private static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException(),
    };

    /// <summary>Python <c>==</c>: numbers compare by value (True == 1), lists and dicts structurally.</summary>
    public static new bool Equals(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        }

        switch (a)
        {
            case null:
                return b is null;
            case string sa:
                return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case Undefined:
                return b is Undefined;
            case IReadOnlyList<object?> la when b is IReadOnlyList<object?> lb && (la is object?[]) == (lb is object?[]):
                if (la.Count != lb.Count)
                {
                    return false;
                }

                for (int i = 0; i < la.Count; i++)
                {
                    if (!Equals(la[i], lb[i]))
                    {
                        return false;
                    }
                }

                return true;
            case IReadOnlyDictionary<string, object?> da when b is IReadOnlyDictionary<string, object?> db:
                if (da.Count != db.Count)
                {
                    return false;
                }

                foreach (KeyValuePair<string, object?> kv in da)
                {
                    if (!db.TryGetValue(kv.Key, out object? other) || !Equals(kv.Value, other))
                    {
                        return false;
                    }
                }

                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    /// <summary>Python ordering (<c>&lt;</c>, <c>&gt;</c>, sort) of numbers, strings and lists.</summary>
    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        }

        if (a is string sa && b is string sb)
        {
            return string.CompareOrdinal(sa, sb);
        }

        if (a is IReadOnlyList<object?> la && b is IReadOnlyList<object?> lb)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (!Equals(la[i], lb[i]))
                {
                    return Compare(la[i], lb[i]);
                }
            }

            return la.Count.CompareTo(lb.Count);
        }

        FailIfUndefined(a);
        FailIfUndefined(b);
        throw new ChatTemplateException($"'<' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>Python <c>in</c>: substring, list membership or dict key.</summary>
    public static bool Contains(object? container, object? item) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new ChatTemplateException($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        IReadOnlyList<object?> list => list.Any(x => Equals(x, item)),
        IReadOnlyDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        Undefined => false,
        _ => throw new ChatTemplateException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    /// <summary>Throws the undefined error when <paramref name="v"/> is undefined (Python's strict operations).</summary>
    public static void FailIfUndefined(object? v)
    {
        if (v is Undefined u)
        {
            throw u.Fail();
        }
    }

    /// <summary>Applies an arithmetic operator: <c>+ - * / // % **</c>.</summary>
    public static object? Arithmetic(string op, object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsNumber(a) && IsNumber(b))
        {
            bool asFloat = a is double || b is double;
            switch (op)
            {
                case "+": return asFloat ? ToDouble(a) + ToDouble(b) : (object)(ToLong(a) + ToLong(b));
                case "-": return asFloat ? ToDouble(a) - ToDouble(b) : (object)(ToLong(a) - ToLong(b));
                case "*": return asFloat ? ToDouble(a) * ToDouble(b) : (object)(ToLong(a) * ToLong(b));
                case "/":
                    return ToDouble(b) == 0 ? throw new ChatTemplateException("division by zero") : ToDouble(a) / ToDouble(b);
                case "//":
                    if (ToDouble(b) == 0)
                    {
                        throw new ChatTemplateException("integer division or modulo by zero");
                    }

                    return asFloat ? Math.Floor(ToDouble(a) / ToDouble(b)) : (object)FloorDiv(ToLong(a), ToLong(b));
                case "%":
                    if (ToDouble(b) == 0)
                    {
                        throw new ChatTemplateException("integer division or modulo by zero");
                    }

                    if (asFloat)
                    {
                        double x = ToDouble(a), y = ToDouble(b);
                        return x - (y * Math.Floor(x / y));
                    }

                    return ToLong(a) - (ToLong(b) * FloorDiv(ToLong(a), ToLong(b)));
                case "**":
                    if (!asFloat && ToLong(b) >= 0)
                    {
                        long result = 1, bas = ToLong(a);
                        for (long i = 0; i < ToLong(b); i++)
                        {
                            result *= bas;
                        }

                        return result;
                    }

                    return Math.Pow(ToDouble(a), ToDouble(b));
            }
        }

        switch (op)
        {
            case "+" when a is string sa && b is string sb:
                return string.Concat(sa, sb);
            case "+" when a is IReadOnlyList<object?> la && b is IReadOnlyList<object?> lb:
                return new List<object?>(la.Concat(lb));
            case "*" when a is string s && b is long or bool:
                return Repeat(s, ToLong(b));
            case "*" when b is string s && a is long or bool:
                return Repeat(s, ToLong(a));
        }

        throw new ChatTemplateException(
            $"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static string Repeat(string s, long n) =>
        n <= 0 ? "" : new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();

    private static long FloorDiv(long a, long b)
    {
        long q = a / b;
        return (a % b != 0) && ((a < 0) != (b < 0)) ? q - 1 : q;
    }

    /// <summary>The items a for loop or a filter iterates: list items, dict keys, string characters.</summary>
    public static IReadOnlyList<object?> Iterate(object? v) => v switch
    {
        IReadOnlyList<object?> list => list,
        IReadOnlyDictionary<string, object?> dict => dict.Keys.Cast<object?>().ToList(),
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(),
        Undefined => [],
        _ => throw new ChatTemplateException($"'{TypeName(v)}' object is not iterable"),
    };

    /// <summary>Python's string length: code points, not UTF-16 units.</summary>
    private static long CodePointCount(string s)
    {
        long n = s.Length;
        foreach (char c in s)
        {
            n -= char.IsLowSurrogate(c) ? 1 : 0;
        }

        return n;
    }

    /// <summary>Python <c>len(v)</c>.</summary>
    public static long Length(object? v) => v switch
    {
        string s => CodePointCount(s),
        IReadOnlyList<object?> list => list.Count,
        IReadOnlyDictionary<string, object?> dict => dict.Count,
        Undefined => 0,
        _ => throw new ChatTemplateException($"object of type '{TypeName(v)}' has no len()"),
    };
}
