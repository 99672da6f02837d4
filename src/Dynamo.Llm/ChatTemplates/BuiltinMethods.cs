using System.Globalization;
using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Python methods called on values: <c>str</c> (strip, split, startswith, replace, format, ...)
/// and <c>dict</c> (items, keys, values, get). Lists are immutable in Hugging Face's sandbox,
/// so they have no methods here.
/// </summary>
internal static class BuiltinMethods
{
    private static readonly HashSet<string> StringMethods =
    [
        "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "upper", "lower", "title",
        "capitalize", "replace", "find", "rfind", "count", "join", "format", "splitlines", "isdigit", "isalpha",
        "isspace", "isupper", "islower",
    ];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];

    public static bool IsMethod(object? receiver, string name) => receiver switch
    {
        string => StringMethods.Contains(name),
        IReadOnlyDictionary<string, object?> => DictMethods.Contains(name),
        _ => false,
    };

    public static object? Call(object? receiver, string name, CallArgs a) => receiver switch
    {
        string s => CallString(s, name, a),
        IReadOnlyDictionary<string, object?> d => CallDict(d, name, a),
        _ => throw new ChatTemplateException($"'{PyOps.TypeName(receiver)}' object has no attribute '{name}'"),
    };

    private static object? CallDict(IReadOnlyDictionary<string, object?> d, string name, CallArgs a) => name switch
    {
        "items" => d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList(),
        "keys" => d.Keys.Cast<object?>().ToList(),
        "values" => d.Values.ToList(),
        _ => a.Get(0, "key") is string key && d.TryGetValue(key, out object? v) ? v : a.Get(1, "default"),
    };

    private static object? CallString(string s, string name, CallArgs a)
    {
        switch (name)
        {
            case "startswith":
                return AnyAffix(a.Get(0, "prefix"), p => s.StartsWith(p, StringComparison.Ordinal));
            case "endswith":
                return AnyAffix(a.Get(0, "suffix"), p => s.EndsWith(p, StringComparison.Ordinal));
            case "strip":
                return a.Get(0, "chars") is string c ? s.Trim(c.ToCharArray()) : s.Trim();
            case "lstrip":
                return a.Get(0, "chars") is string l ? s.TrimStart(l.ToCharArray()) : s.TrimStart();
            case "rstrip":
                return a.Get(0, "chars") is string r ? s.TrimEnd(r.ToCharArray()) : s.TrimEnd();
            case "split":
            case "rsplit":
                return Split(s, a.Get(0, "sep") as string, a.Get(1, "maxsplit", -1L) is long m ? m : -1, name == "rsplit");
            case "upper":
                return s.ToUpperInvariant();
            case "lower":
                return s.ToLowerInvariant();
            case "capitalize":
                return BuiltinFilters.Capitalize(s);
            case "title":
                return PyTitle(s);
            case "replace":
                return ReplaceCount(s, PyOps.ToStr(a.Get(0, "old")), PyOps.ToStr(a.Get(1, "new")), a.Get(2, "count", -1L) is long n ? n : -1);
            case "find":
                return (long)s.IndexOf(PyOps.ToStr(a.Get(0, "sub")), StringComparison.Ordinal);
            case "rfind":
                return (long)s.LastIndexOf(PyOps.ToStr(a.Get(0, "sub")), StringComparison.Ordinal);
            case "count":
                string sub = PyOps.ToStr(a.Get(0, "sub"));
                return sub.Length == 0 ? s.Length + 1L : (long)((s.Length - s.Replace(sub, "", StringComparison.Ordinal).Length) / sub.Length);
            case "join":
                return string.Join(s, PyOps.Iterate(a.Get(0, "iterable")).Select(x => x as string ?? throw new ChatTemplateException($"sequence item: expected str instance, {PyOps.TypeName(x)} found")));
            case "format":
                return Format(s, a);
            case "splitlines":
                return s.Split('\n').Select(x => (object?)x).SkipLast(s.EndsWith('\n') ? 1 : 0).ToList();
            case "isdigit":
                return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha":
                return s.Length > 0 && s.All(char.IsLetter);
            case "isspace":
                return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "isupper":
                return s.Any(char.IsLetter) && s == s.ToUpperInvariant();
            default:
                return s.Any(char.IsLetter) && s == s.ToLowerInvariant();
        }
    }

    private static bool AnyAffix(object? affix, Func<string, bool> test) => affix switch
    {
        string p => test(p),
        IReadOnlyList<object?> options => options.Any(o => o is string p && test(p)),
        _ => throw new ChatTemplateException($"startswith/endswith first arg must be str or a tuple of str, not {PyOps.TypeName(affix)}"),
    };

    /// <summary>Python <c>str.split</c> / <c>rsplit</c>: no separator splits on whitespace runs and drops empties.</summary>
    private static List<object?> Split(string s, string? sep, long maxSplit, bool fromRight)
    {
        if (sep is { Length: 0 })
        {
            throw new ChatTemplateException("empty separator");
        }

        List<string> parts;
        if (sep is null)
        {
            parts = [.. s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)];
            if (maxSplit >= 0 && parts.Count > maxSplit + 1)
            {
                // Re-split keeping the remainder intact (rare in templates; done the simple way).
                parts = SplitWhitespaceLimited(s, (int)maxSplit, fromRight);
            }
        }
        else if (maxSplit < 0)
        {
            parts = [.. s.Split(sep)];
        }
        else if (!fromRight)
        {
            parts = [.. s.Split(sep, (int)Math.Min(maxSplit + 1, int.MaxValue))];
        }
        else
        {
            parts = [];
            string rest = s;
            while (parts.Count < maxSplit)
            {
                int i = rest.LastIndexOf(sep, StringComparison.Ordinal);
                if (i < 0)
                {
                    break;
                }

                parts.Insert(0, rest[(i + sep.Length)..]);
                rest = rest[..i];
            }

            parts.Insert(0, rest);
        }

        return parts.Select(p => (object?)p).ToList();
    }

    private static List<string> SplitWhitespaceLimited(string s, int maxSplit, bool fromRight)
    {
        string work = fromRight ? s.TrimEnd() : s.TrimStart();
        var parts = new List<string>();
        while (parts.Count < maxSplit)
        {
            work = fromRight ? work.TrimEnd() : work.TrimStart();
            int i = fromRight ? Array.FindLastIndex(work.ToCharArray(), char.IsWhiteSpace) : work.IndexOfAny([' ', '\t', '\n', '\r', '\f', '\v']);
            if (i < 0)
            {
                break;
            }

            if (fromRight)
            {
                parts.Insert(0, work[(i + 1)..]);
                work = work[..i];
            }
            else
            {
                parts.Add(work[..i]);
                work = work[(i + 1)..];
            }
        }

        work = fromRight ? work.TrimEnd() : work.TrimStart();
        if (work.Length > 0)
        {
            if (fromRight)
            {
                parts.Insert(0, work);
            }
            else
            {
                parts.Add(work);
            }
        }

        return parts;
    }

    /// <summary>Python <c>str.replace</c> with an optional count (negative: all).</summary>
    public static string ReplaceCount(string s, string old, string replacement, long count)
    {
        if (count < 0)
        {
            return old.Length == 0 ? InsertBetween(s, replacement, long.MaxValue) : s.Replace(old, replacement, StringComparison.Ordinal);
        }

        if (old.Length == 0)
        {
            return InsertBetween(s, replacement, count);
        }

        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (i < 0)
            {
                break;
            }

            sb.Append(s, pos, i - pos).Append(replacement);
            pos = i + old.Length;
        }

        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static string InsertBetween(string s, string insert, long count)
    {
        var sb = new StringBuilder();
        long n = 0;
        for (int i = 0; i <= s.Length; i++)
        {
            if (n++ < count)
            {
                sb.Append(insert);
            }

            if (i < s.Length)
            {
                sb.Append(s[i]);
            }
        }

        return sb.ToString();
    }

    /// <summary>Python <c>str.title</c>: upper-case a letter that follows a non-letter.</summary>
    private static string PyTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousIsLetter = false;
        foreach (char c in s)
        {
            sb.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }

        return sb.ToString();
    }

    /// <summary>Python <c>str.format</c> with <c>{}</c>, <c>{0}</c> and <c>{name}</c> fields (no format specs).</summary>
    private static string Format(string s, CallArgs a)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{')
            {
                sb.Append('{');
                i++;
            }
            else if (c == '}' && i + 1 < s.Length && s[i + 1] == '}')
            {
                sb.Append('}');
                i++;
            }
            else if (c == '{')
            {
                int close = s.IndexOf('}', i);
                if (close < 0)
                {
                    throw new ChatTemplateException("Single '{' encountered in format string");
                }

                string field = s[(i + 1)..close];
                if (field.Contains(':', StringComparison.Ordinal) || field.Contains('!', StringComparison.Ordinal))
                {
                    throw new ChatTemplateException($"format spec '{field}' is not supported in str.format");
                }

                object? value = field.Length == 0
                    ? a.Positional.ElementAtOrDefault(auto++)
                    : int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out int index)
                        ? a.Positional.ElementAtOrDefault(index)
                        : a.Keywords?.GetValueOrDefault(field);
                sb.Append(PyOps.ToStr(value));
                i = close;
            }
            else
            {
                sb.Append(c);
            }
        }

        return sb.ToString();
    }
}
