using System.Globalization;
using System.Text;

namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Splits template source into tokens with Jinja2's whitespace rules as Hugging Face configures
/// them: <c>trim_blocks</c> (one newline after <c>%}</c> or <c>#}</c> is dropped),
/// <c>lstrip_blocks</c> (spaces and tabs before <c>{%</c> or <c>{#</c> at the start of a line are
/// dropped), <c>-</c> and <c>+</c> markers on tags, and no <c>keep_trailing_newline</c>.
/// Comments are dropped here; <c>{% raw %}</c> bodies become text.
/// </summary>
internal sealed class TemplateLexer
{
    private static readonly string[] Operators =
    [
        "**", "//", "==", "!=", "<=", ">=",
        "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|",
    ];

    private readonly string _src;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private int _line = 1;

    private TemplateLexer(string source)
    {
        string src = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (src.EndsWith('\n'))
        {
            src = src[..^1];
        }

        _src = src;
    }

    /// <summary>Tokenizes a whole template; the list ends with a <see cref="TokenKind.End"/> token.</summary>
    public static List<Token> Tokenize(string source)
    {
        var lexer = new TemplateLexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        while (_pos < _src.Length)
        {
            int textStart = _pos;
            int tag = FindTagStart(_pos);
            if (tag < 0)
            {
                EmitText(_src[textStart..]);
                _pos = _src.Length;
                break;
            }

            char kind = _src[tag + 1];
            char marker = tag + 2 < _src.Length ? _src[tag + 2] : '\0';
            string text = _src[textStart..tag];
            if (marker == '-')
            {
                text = text.TrimEnd();
            }
            else if (marker != '+' && kind != '{')
            {
                text = LStrip(text, textStart == 0 || _src[textStart - 1] == '\n');
            }

            EmitText(text);
            _line += Count(_src, textStart, tag, '\n');
            _pos = tag + 2 + (marker is '-' or '+' ? 1 : 0);
            switch (kind)
            {
                case '#':
                    LexComment(tag);
                    break;
                case '{':
                    LexTag(TokenKind.VariableBegin, TokenKind.VariableEnd, '}');
                    break;
                default:
                    if (!TryLexRaw(tag))
                    {
                        LexTag(TokenKind.BlockBegin, TokenKind.BlockEnd, '%');
                    }

                    break;
            }
        }

        _tokens.Add(new Token(TokenKind.End, "", _line));
    }

    /// <summary>lstrip_blocks: drop the spaces and tabs that alone precede a tag on its line.</summary>
    private static string LStrip(string text, bool lineStarting)
    {
        int lineStart = text.LastIndexOf('\n') + 1;
        if (lineStart == 0 && !lineStarting)
        {
            return text;
        }

        for (int i = lineStart; i < text.Length; i++)
        {
            if (text[i] is not (' ' or '\t'))
            {
                return text;
            }
        }

        return text[..lineStart];
    }

    private int FindTagStart(int from)
    {
        while (true)
        {
            int i = _src.IndexOf('{', from);
            if (i < 0 || i + 1 >= _src.Length)
            {
                return -1;
            }

            if (_src[i + 1] is '{' or '%' or '#')
            {
                return i;
            }

            from = i + 1;
        }
    }

    private void EmitText(string text)
    {
        if (text.Length > 0)
        {
            _tokens.Add(new Token(TokenKind.Text, text, _line));
        }
    }

    /// <summary>After a tag end: <c>-</c> eats all whitespace, plain block/comment ends eat one newline.</summary>
    private void AfterTagEnd(char marker, bool isBlock)
    {
        if (marker == '-')
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos]))
            {
                if (_src[_pos] == '\n')
                {
                    _line++;
                }

                _pos++;
            }
        }
        else if (marker != '+' && isBlock && _pos < _src.Length && _src[_pos] == '\n')
        {
            _line++;
            _pos++;
        }
    }

    private void LexComment(int tagStart)
    {
        int end = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0)
        {
            throw Error($"unclosed comment starting at line {_line}");
        }

        char marker = end > tagStart + 2 && _src[end - 1] is '-' or '+' ? _src[end - 1] : '\0';
        _line += Count(_src, _pos, end, '\n');
        _pos = end + 2;
        AfterTagEnd(marker, isBlock: true);
    }

    /// <summary><c>{% raw %}...{% endraw %}</c>: the body is text, tags inside it are not interpreted.</summary>
    private bool TryLexRaw(int tagStart)
    {
        int p = SkipSpaces(_pos);
        if (string.CompareOrdinal(_src, p, "raw", 0, 3) != 0)
        {
            return false;
        }

        p = SkipSpaces(p + 3);
        char openMarker = _src.Length > p && _src[p] is '-' or '+' ? _src[p] : '\0';
        int close = openMarker == '\0' ? p : p + 1;
        if (string.CompareOrdinal(_src, close, "%}", 0, 2) != 0)
        {
            return false;
        }

        int bodyStart = close + 2;
        int search = bodyStart;
        while (true)
        {
            int t = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (t < 0)
            {
                _line += Count(_src, tagStart, _src.Length, '\n');
                throw Error("unclosed {% raw %} block (missing {% endraw %})");
            }

            int q = t + 2;
            char endMarker = _src.Length > q && _src[q] is '-' or '+' ? _src[q] : '\0';
            q = SkipSpaces(endMarker == '\0' ? q : q + 1);
            if (string.CompareOrdinal(_src, q, "endraw", 0, 6) == 0)
            {
                q = SkipSpaces(q + 6);
                char closeMarker = _src.Length > q && _src[q] is '-' or '+' ? _src[q] : '\0';
                int tagClose = closeMarker == '\0' ? q : q + 1;
                if (string.CompareOrdinal(_src, tagClose, "%}", 0, 2) == 0)
                {
                    int start = bodyStart;
                    if (openMarker == '-')
                    {
                        while (start < t && char.IsWhiteSpace(_src[start]))
                        {
                            start++;
                        }
                    }

                    string body = _src[start..t];
                    EmitText(endMarker == '-' ? body.TrimEnd() : body);
                    _line += Count(_src, tagStart, tagClose, '\n');
                    _pos = tagClose + 2;
                    AfterTagEnd(closeMarker, isBlock: true);
                    return true;
                }
            }

            search = t + 2;
        }
    }

    private int SkipSpaces(int p)
    {
        while (p < _src.Length && char.IsWhiteSpace(_src[p]))
        {
            p++;
        }

        return p;
    }

    private void LexTag(TokenKind begin, TokenKind end, char closeChar)
    {
        _tokens.Add(new Token(begin, begin == TokenKind.BlockBegin ? "{%" : "{{", _line));
        int braceDepth = 0;
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos]))
            {
                if (_src[_pos] == '\n')
                {
                    _line++;
                }

                _pos++;
            }

            if (_pos >= _src.Length)
            {
                throw Error($"unclosed tag: expected '{closeChar}}}' before the end of the template");
            }

            char c = _src[_pos];
            if (braceDepth == 0 && TryTagEnd(closeChar, out char marker))
            {
                _tokens.Add(new Token(end, closeChar + "}", _line));
                AfterTagEnd(marker, isBlock: end == TokenKind.BlockEnd);
                return;
            }

            if (c is '"' or '\'')
            {
                LexString(c);
            }
            else if (char.IsAsciiDigit(c))
            {
                LexNumber();
            }
            else if (char.IsAsciiLetter(c) || c == '_')
            {
                int start = _pos;
                while (_pos < _src.Length && (char.IsAsciiLetterOrDigit(_src[_pos]) || _src[_pos] == '_'))
                {
                    _pos++;
                }

                _tokens.Add(new Token(TokenKind.Name, _src[start.._pos], _line));
            }
            else
            {
                string? op = null;
                foreach (string candidate in Operators)
                {
                    if (string.CompareOrdinal(_src, _pos, candidate, 0, candidate.Length) == 0)
                    {
                        op = candidate;
                        break;
                    }
                }

                if (op is null)
                {
                    throw Error($"unexpected character '{c}'");
                }

                braceDepth += op == "{" ? 1 : op == "}" ? -1 : 0;
                _tokens.Add(new Token(TokenKind.Operator, op, _line));
                _pos += op.Length;
            }
        }
    }

    private bool TryTagEnd(char closeChar, out char marker)
    {
        marker = '\0';
        int p = _pos;
        if (_src[p] is '-' or '+' && p + 1 < _src.Length && _src[p + 1] == closeChar)
        {
            marker = _src[p];
            p++;
        }

        if (p + 1 < _src.Length && _src[p] == closeChar && _src[p + 1] == '}')
        {
            _pos = p + 2;
            return true;
        }

        marker = '\0';
        return false;
    }

    private void LexString(char quote)
    {
        int line = _line;
        var sb = new StringBuilder();
        int p = _pos + 1;
        while (true)
        {
            if (p >= _src.Length)
            {
                throw Error("unterminated string literal", line);
            }

            char c = _src[p];
            if (c == quote)
            {
                break;
            }

            if (c == '\n')
            {
                _line++;
            }

            if (c != '\\' || p + 1 >= _src.Length)
            {
                sb.Append(c);
                p++;
                continue;
            }

            char e = _src[p + 1];
            p += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'a': sb.Append('\a'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': _line++; break;
                case 'x': p = AppendHex(sb, p, 2, line); break;
                case 'u': p = AppendHex(sb, p, 4, line); break;
                case 'U': p = AppendHex(sb, p, 8, line); break;
                default: sb.Append('\\').Append(e); break;
            }
        }

        _tokens.Add(new Token(TokenKind.String, sb.ToString(), line));
        _pos = p + 1;
    }

    private int AppendHex(StringBuilder sb, int p, int digits, int line)
    {
        if (p + digits > _src.Length
            || !int.TryParse(_src.AsSpan(p, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
        {
            throw Error("invalid escape sequence in string literal", line);
        }

        sb.Append(char.ConvertFromUtf32(code));
        return p + digits;
    }

    private void LexNumber()
    {
        int start = _pos;
        bool isFloat = false;
        SkipDigits();
        if (_pos + 1 < _src.Length && _src[_pos] == '.' && char.IsAsciiDigit(_src[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            SkipDigits();
        }

        if (_pos < _src.Length && _src[_pos] is 'e' or 'E')
        {
            int p = _pos + 1;
            if (p < _src.Length && _src[p] is '+' or '-')
            {
                p++;
            }

            if (p < _src.Length && char.IsAsciiDigit(_src[p]))
            {
                isFloat = true;
                _pos = p;
                SkipDigits();
            }
        }

        string text = _src[start.._pos].Replace("_", "", StringComparison.Ordinal);
        object number = isFloat
            ? (object)double.Parse(text, CultureInfo.InvariantCulture)
            : long.Parse(text, CultureInfo.InvariantCulture);
        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, _line, number));
    }

    private void SkipDigits()
    {
        while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || _src[_pos] == '_'))
        {
            _pos++;
        }
    }

    private static int Count(string s, int from, int to, char c)
    {
        int n = 0;
        for (int i = from; i < to; i++)
        {
            if (s[i] == c)
            {
                n++;
            }
        }

        return n;
    }

    private ChatTemplateException Error(string message, int? line = null) =>
        new($"template syntax error: {message} (line {line ?? _line})");
}
