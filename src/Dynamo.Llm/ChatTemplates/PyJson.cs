using System.Globalization;
using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// The <c>tojson</c> filter as Hugging Face defines it: Python's
/// <c>json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)</c>.
/// Default separators are <c>", "</c> and <c>": "</c> (<c>","</c> between items when indenting);
/// keys keep insertion order; floats print as Python does (<c>1.0</c>, <c>1e-05</c>).
/// </summary>
internal static class PyJson
{
    public static string Dumps(object? value, int? indent = null, string? itemSeparator = null, string? keySeparator = null, bool sortKeys = false)
    {
        var writer = new Writer(
            new StringBuilder(),
            indent,
            itemSeparator ?? (indent is null ? ", " : ","),
            keySeparator ?? ": ",
            sortKeys);
        writer.Write(value, 0);
        return writer.Output.ToString();
    }

    private sealed record Writer(StringBuilder Output, int? Indent, string ItemSeparator, string KeySeparator, bool SortKeys)
    {
        public void Write(object? value, int depth)
        {
            switch (value)
            {
                case null:
                    Output.Append("null");
                    break;
                case bool b:
                    Output.Append(b ? "true" : "false");
                    break;
                case long l:
                    Output.Append(l.ToString(CultureInfo.InvariantCulture));
                    break;
                case double d:
                    Output.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : PyOps.FormatFloat(d));
                    break;
                case string s:
                    WriteString(s);
                    break;
                case IReadOnlyList<object?> list:
                    WriteContainer('[', ']', list.Count, depth, i => Write(list[i], depth + 1));
                    break;
                case IReadOnlyDictionary<string, object?> dict:
                    List<KeyValuePair<string, object?>> entries = [.. dict];
                    if (SortKeys)
                    {
                        entries.Sort((x, y) => string.CompareOrdinal(x.Key, y.Key));
                    }

                    WriteContainer('{', '}', entries.Count, depth, i =>
                    {
                        WriteString(entries[i].Key);
                        Output.Append(KeySeparator);
                        Write(entries[i].Value, depth + 1);
                    });
                    break;
                case Undefined u:
                    throw u.Fail();
                default:
                    throw new ChatTemplateException($"Object of type {PyOps.TypeName(value)} is not JSON serializable");
            }
        }

        private void WriteContainer(char open, char close, int count, int depth, Action<int> writeItem)
        {
            Output.Append(open);
            if (count == 0)
            {
                Output.Append(close);
                return;
            }

            for (int i = 0; i < count; i++)
            {
                if (i > 0)
                {
                    Output.Append(ItemSeparator);
                }

                NewLine(depth + 1);
                writeItem(i);
            }

            NewLine(depth);
            Output.Append(close);
        }

        private void NewLine(int depth)
        {
            if (Indent is int n)
            {
                Output.Append('\n').Append(' ', n * depth);
            }
        }

        public void WriteString(string s)
        {
            Output.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': Output.Append("\\\""); break;
                    case '\\': Output.Append("\\\\"); break;
                    case '\n': Output.Append("\\n"); break;
                    case '\r': Output.Append("\\r"); break;
                    case '\t': Output.Append("\\t"); break;
                    case '\b': Output.Append("\\b"); break;
                    case '\f': Output.Append("\\f"); break;
                    default:
                        if (c < 0x20)
                        {
                            Output.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else
                        {
                            Output.Append(c);
                        }

                        break;
                }
            }

            Output.Append('"');
        }
    }
}
