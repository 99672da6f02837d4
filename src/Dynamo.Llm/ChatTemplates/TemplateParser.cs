namespace Dynamo.Llm.ChatTemplates;

/// <summary>
/// Recursive-descent parser from tokens to the statement/expression AST, following Jinja2's
/// grammar and operator precedence (or &lt; and &lt; not &lt; comparisons &lt; + - &lt; ~ &lt;
/// * / // % &lt; ** &lt; unary &lt; postfix, filters and tests). Filters and tests are resolved
/// here, so an unknown one fails at parse time with its line.
/// </summary>
internal sealed class TemplateParser
{
    private readonly List<Token> _tokens;
    private int _pos;

    private TemplateParser(List<Token> tokens)
    {
        _tokens = tokens;
    }

    public static IReadOnlyList<Stmt> Parse(string source)
    {
        var parser = new TemplateParser(TemplateLexer.Tokenize(source));
        List<Stmt> body = parser.ParseBody([], out string? end);
        if (end is not null)
        {
            throw parser.Error($"unexpected '{end}'");
        }

        return body;
    }

    private Token Current => _tokens[_pos];

    private Token Next() => _tokens[_pos++];

    private Token PeekAhead(int n) => _tokens[Math.Min(_pos + n, _tokens.Count - 1)];

    private ChatTemplateException Error(string message, int? line = null) =>
        new($"template syntax error: {message} (line {line ?? Current.Line})");

    private Token Expect(TokenKind kind, string? value = null)
    {
        Token t = Current;
        if (t.Kind != kind || (value is not null && t.Value != value))
        {
            string wanted = value is not null ? $"'{value}'" : kind.ToString().ToLowerInvariant();
            throw Error($"expected {wanted}, got {t.Describe()}");
        }

        _pos++;
        return t;
    }

    private bool Accept(string op)
    {
        if (Current.IsOperator(op))
        {
            _pos++;
            return true;
        }

        return false;
    }

    private bool AcceptName(string name)
    {
        if (Current.IsName(name))
        {
            _pos++;
            return true;
        }

        return false;
    }

    private string ExpectName() => Expect(TokenKind.Name).Value;

    /// <summary>Parses statements until a block tag named in <paramref name="endTags"/> (consumed up to its name).</summary>
    private List<Stmt> ParseBody(string[] endTags, out string? endTag)
    {
        var body = new List<Stmt>();
        while (true)
        {
            Token t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (endTags.Length > 0)
                    {
                        throw Error($"unexpected end of template, expected '{string.Join("' or '", endTags)}'");
                    }

                    endTag = null;
                    return body;
                case TokenKind.Text:
                    _pos++;
                    body.Add(new Stmt.Text(t.Line, t.Value));
                    break;
                case TokenKind.VariableBegin:
                    _pos++;
                    body.Add(new Stmt.Output(t.Line, ParseTuple()));
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    Token name = PeekAhead(1);
                    if (name.Kind == TokenKind.Name && Array.IndexOf(endTags, name.Value) >= 0)
                    {
                        _pos += 2;
                        endTag = name.Value;
                        return body;
                    }

                    _pos++;
                    body.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {t.Describe()}");
            }
        }
    }

    private Stmt ParseStatement()
    {
        Token tag = Current;
        if (tag.Kind != TokenKind.Name)
        {
            throw Error($"expected a tag name, got {tag.Describe()}");
        }

        _pos++;
        switch (tag.Value)
        {
            case "if":
                return ParseIf(tag.Line);
            case "for":
                return ParseFor(tag.Line);
            case "set":
                return ParseSet(tag.Line);
            case "macro":
                return ParseMacro(tag.Line);
            case "filter":
                {
                    List<Expr.Filter> filters = ParseFilterChain(null);
                    Expect(TokenKind.BlockEnd);
                    return new Stmt.FilterBlock(tag.Line, filters, ParseBodyTo("endfilter"));
                }

            case "generation":
                Expect(TokenKind.BlockEnd);
                return new Stmt.Block(tag.Line, ParseBodyTo("endgeneration"));
            case "break":
            case "continue":
                Expect(TokenKind.BlockEnd);
                return new Stmt.LoopControl(tag.Line, tag.Value == "break" ? Stmt.Flow.Break : Stmt.Flow.Continue);
            default:
                throw Error($"unknown or unsupported tag '{tag.Value}'", tag.Line);
        }
    }

    /// <summary>Parses a body that must end with <paramref name="endTag"/> and consumes the end tag.</summary>
    private List<Stmt> ParseBodyTo(string endTag)
    {
        List<Stmt> body = ParseBody([endTag], out _);
        Expect(TokenKind.BlockEnd);
        return body;
    }

    private Stmt.If ParseIf(int line)
    {
        var branches = new List<KeyValuePair<Expr, IReadOnlyList<Stmt>>>();
        List<Stmt> otherwise = [];
        Expr condition = ParseExpression();
        while (true)
        {
            Expect(TokenKind.BlockEnd);
            List<Stmt> body = ParseBody(["elif", "else", "endif"], out string? end);
            branches.Add(new(condition, body));
            if (end == "elif")
            {
                condition = ParseExpression();
                continue;
            }

            if (end == "else")
            {
                Expect(TokenKind.BlockEnd);
                otherwise = ParseBodyTo("endif");
            }
            else
            {
                Expect(TokenKind.BlockEnd);
            }

            return new Stmt.If(line, branches, otherwise);
        }
    }

    private Stmt.For ParseFor(int line)
    {
        List<string> targets = ParseTargets();
        Expect(TokenKind.Name, "in");
        Expr items = ParseExpression(allowConditional: false);
        Expr? filter = AcceptName("if") ? ParseExpression() : null;
        if (Current.IsName("recursive"))
        {
            throw Error("recursive for loops are not supported");
        }

        Expect(TokenKind.BlockEnd);
        List<Stmt> body = ParseBody(["else", "endfor"], out string? end);
        List<Stmt> otherwise = [];
        Expect(TokenKind.BlockEnd);
        if (end == "else")
        {
            otherwise = ParseBodyTo("endfor");
        }

        return new Stmt.For(line, targets, items, filter, body, otherwise);
    }

    private List<string> ParseTargets()
    {
        bool parenthesized = Accept("(");
        var names = new List<string> { ExpectName() };
        while (Accept(","))
        {
            if (Current.Kind != TokenKind.Name || Current.IsName("in"))
            {
                break;
            }

            names.Add(ExpectName());
        }

        if (parenthesized)
        {
            Expect(TokenKind.Operator, ")");
        }

        return names;
    }

    private Stmt ParseSet(int line)
    {
        string first = ExpectName();
        if (Accept("."))
        {
            string attribute = ExpectName();
            Expect(TokenKind.Operator, "=");
            Expr v = ParseTuple();
            Expect(TokenKind.BlockEnd);
            return new Stmt.Set(line, [first], attribute, v);
        }

        var targets = new List<string> { first };
        while (Accept(","))
        {
            targets.Add(ExpectName());
        }

        if (Accept("="))
        {
            Expr value = ParseTuple();
            Expect(TokenKind.BlockEnd);
            return new Stmt.Set(line, targets, null, value);
        }

        if (targets.Count > 1)
        {
            throw Error("a block set assigns exactly one name");
        }

        List<Expr.Filter> filters = Current.IsOperator("|") ? ParseFilterChain(null) : [];
        Expect(TokenKind.BlockEnd);
        return new Stmt.SetBlock(line, first, filters, ParseBodyTo("endset"));
    }

    private Stmt.MacroDefinition ParseMacro(int line)
    {
        string name = ExpectName();
        var parameters = new List<string>();
        var defaults = new List<Expr?>();
        Expect(TokenKind.Operator, "(");
        ParseCommaList(")", () =>
        {
            parameters.Add(ExpectName());
            defaults.Add(Accept("=") ? ParseExpression() : null);
        });

        Expect(TokenKind.BlockEnd);
        return new Stmt.MacroDefinition(line, name, parameters, defaults, ParseBodyTo("endmacro"));
    }

    /// <summary>Items separated by commas (a trailing comma allowed) through <paramref name="close"/>.</summary>
    private void ParseCommaList(string close, Action parseItem)
    {
        bool first = true;
        while (!Accept(close))
        {
            if (!first)
            {
                Expect(TokenKind.Operator, ",");
                if (Accept(close))
                {
                    return;
                }
            }

            first = false;
            parseItem();
        }
    }

    /// <summary>An expression, or a bare tuple <c>a, b</c>.</summary>
    private Expr ParseTuple()
    {
        int line = Current.Line;
        Expr first = ParseExpression();
        if (!Current.IsOperator(","))
        {
            return first;
        }

        var items = new List<Expr> { first };
        while (Accept(","))
        {
            if (IsExpressionEnd())
            {
                break;
            }

            items.Add(ParseExpression());
        }

        return new Expr.ListLiteral(line, items, isTuple: true);
    }

    private bool IsExpressionEnd() =>
        Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd or TokenKind.End || Current.IsOperator(")");

    private Expr ParseExpression(bool allowConditional = true)
    {
        Expr expr = ParseOr();
        while (allowConditional && Current.IsName("if"))
        {
            int line = Next().Line;
            Expr condition = ParseOr();
            Expr? otherwise = AcceptName("else") ? ParseExpression() : null;
            expr = new Expr.Conditional(line, condition, expr, otherwise);
        }

        return expr;
    }

    private Expr ParseOr() => ParseLogical("or", ParseAnd);

    private Expr ParseAnd() => ParseLogical("and", ParseNot);

    private Expr ParseLogical(string keyword, Func<Expr> operand)
    {
        Expr left = operand();
        while (Current.IsName(keyword))
        {
            int line = Next().Line;
            left = new Expr.Logical(line, isAnd: keyword == "and", left, operand());
        }

        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            int line = Next().Line;
            return new Expr.Not(line, ParseNot());
        }

        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        int line = Current.Line;
        Expr first = ParseMath1();
        var rest = new List<KeyValuePair<string, Expr>>();
        while (true)
        {
            Token t = Current;
            string? op = null;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                op = t.Value;
                _pos++;
            }
            else if (t.IsName("in"))
            {
                op = "in";
                _pos++;
            }
            else if (t.IsName("not") && PeekAhead(1).IsName("in"))
            {
                op = "not in";
                _pos += 2;
            }

            if (op is null)
            {
                break;
            }

            rest.Add(new(op, ParseMath1()));
        }

        return rest.Count == 0 ? first : new Expr.Compare(line, first, rest);
    }

    private Expr ParseMath1() => ParseArithmetic(["+", "-"], ParseConcat);

    /// <summary>A left-associative run of the given arithmetic operators.</summary>
    private Expr ParseArithmetic(string[] operators, Func<Expr> operand)
    {
        Expr left = operand();
        while (Current.Kind == TokenKind.Operator && Array.IndexOf(operators, Current.Value) >= 0)
        {
            Token op = Next();
            left = new Expr.Binary(op.Line, op.Value, left, operand());
        }

        return left;
    }

    private Expr ParseConcat()
    {
        int line = Current.Line;
        Expr first = ParseMath2();
        if (!Current.IsOperator("~"))
        {
            return first;
        }

        var parts = new List<Expr> { first };
        while (Accept("~"))
        {
            parts.Add(ParseMath2());
        }

        return new Expr.Concat(line, parts);
    }

    private Expr ParseMath2() => ParseArithmetic(["*", "/", "//", "%"], ParsePow);

    private Expr ParsePow() => ParseArithmetic(["**"], () => ParseUnary(withFilter: true));

    private Expr ParseUnary(bool withFilter)
    {
        Token t = Current;
        Expr expr;
        if (t.IsOperator("-") || t.IsOperator("+"))
        {
            _pos++;
            expr = new Expr.Negate(t.Line, ParseUnary(withFilter: false), minus: t.Value == "-");
        }
        else
        {
            expr = ParsePostfix(ParsePrimary());
        }

        return withFilter ? ParseFilterAndTests(expr) : expr;
    }

    private Expr ParsePrimary()
    {
        Token t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new Expr.Literal(t.Line, true),
                    "false" or "False" => new Expr.Literal(t.Line, false),
                    "none" or "None" => new Expr.Literal(t.Line, null),
                    _ => new Expr.Name(t.Line, t.Value),
                };
            case TokenKind.String:
                string s = t.Value;
                while (Current.Kind == TokenKind.String)
                {
                    s += Next().Value;
                }

                return new Expr.Literal(t.Line, s);
            case TokenKind.Integer:
            case TokenKind.Float:
                return new Expr.Literal(t.Line, t.Number);
            case TokenKind.Operator when t.Value == "(":
                return ParseParenthesized(t.Line);
            case TokenKind.Operator when t.Value == "[":
                {
                    var items = new List<Expr>();
                    ParseCommaList("]", () => items.Add(ParseExpression()));

                    return new Expr.ListLiteral(t.Line, items, isTuple: false);
                }

            case TokenKind.Operator when t.Value == "{":
                {
                    var pairs = new List<KeyValuePair<Expr, Expr>>();
                    ParseCommaList("}", () =>
                    {
                        Expr key = ParseExpression();
                        Expect(TokenKind.Operator, ":");
                        pairs.Add(new(key, ParseExpression()));
                    });

                    return new Expr.DictLiteral(t.Line, pairs);
                }

            default:
                _pos--;
                throw Error($"unexpected {t.Describe()}");
        }
    }

    /// <summary>After <c>(</c>: the empty tuple, a parenthesized expression, or a tuple (<c>(a,)</c>, <c>(a, b)</c>).</summary>
    private Expr ParseParenthesized(int line)
    {
        if (Accept(")"))
        {
            return new Expr.ListLiteral(line, [], isTuple: true);
        }

        Expr inner = ParseTuple();
        Expect(TokenKind.Operator, ")");
        return inner;
    }

    private Expr ParsePostfix(Expr expr)
    {
        while (true)
        {
            Token t = Current;
            if (t.IsOperator("."))
            {
                _pos++;
                Token member = Next();
                expr = member.Kind switch
                {
                    TokenKind.Name => new Expr.Attribute(t.Line, expr, member.Value),
                    TokenKind.Integer => new Expr.Item(t.Line, expr, new Expr.Literal(t.Line, member.Number)),
                    _ => throw Error($"expected an attribute name after '.', got {member.Describe()}"),
                };
            }
            else if (t.IsOperator("["))
            {
                _pos++;
                expr = ParseSubscript(expr, t.Line);
            }
            else if (t.IsOperator("("))
            {
                _pos++;
                (List<Expr> args, List<KeyValuePair<string, Expr>> kwargs) = ParseCallArgs();
                expr = new Expr.Call(t.Line, expr, args, kwargs);
            }
            else
            {
                return expr;
            }
        }
    }

    private Expr ParseSubscript(Expr target, int line)
    {
        Expr? start = null, stop = null, step = null;
        if (!Current.IsOperator(":"))
        {
            start = ParseExpression();
            if (Accept("]"))
            {
                return new Expr.Item(line, target, start);
            }
        }

        Expect(TokenKind.Operator, ":");
        if (!Current.IsOperator("]") && !Current.IsOperator(":"))
        {
            stop = ParseExpression();
        }

        if (Accept(":") && !Current.IsOperator("]"))
        {
            step = ParseExpression();
        }

        Expect(TokenKind.Operator, "]");
        return new Expr.Slice(line, target, start, stop, step);
    }

    /// <summary>Arguments after an opening parenthesis, through the closing one.</summary>
    private (List<Expr> Args, List<KeyValuePair<string, Expr>> Kwargs) ParseCallArgs()
    {
        var args = new List<Expr>();
        var kwargs = new List<KeyValuePair<string, Expr>>();
        ParseCommaList(")", () =>
        {
            if (Current.Kind == TokenKind.Name && PeekAhead(1).IsOperator("="))
            {
                string name = Next().Value;
                _pos++;
                kwargs.Add(new(name, ParseExpression()));
            }
            else if (kwargs.Count > 0)
            {
                throw Error("positional argument follows keyword argument");
            }
            else
            {
                args.Add(ParseExpression());
            }
        });

        return (args, kwargs);
    }

    private Expr ParseFilterAndTests(Expr expr)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                List<Expr.Filter> chain = ParseFilterChain(expr);
                expr = chain[^1];
            }
            else if (Current.IsName("is"))
            {
                expr = ParseTest(expr);
            }
            else if (Current.IsOperator("("))
            {
                _pos++;
                (List<Expr> args, List<KeyValuePair<string, Expr>> kwargs) = ParseCallArgs();
                expr = new Expr.Call(expr.Line, expr, args, kwargs);
            }
            else
            {
                return expr;
            }
        }
    }

    /// <summary>Parses <c>| f(args) | g ...</c>; each filter takes the previous one as input.</summary>
    private List<Expr.Filter> ParseFilterChain(Expr? input)
    {
        var chain = new List<Expr.Filter>();
        bool first = input is null;
        while (first || Accept("|"))
        {
            first = false;
            Token name = Expect(TokenKind.Name);
            if (!BuiltinFilters.TryGet(name.Value, out BuiltinFilters.FilterFunction? fn))
            {
                throw Error($"unknown or unsupported filter '{name.Value}'", name.Line);
            }

            List<Expr> args = [];
            List<KeyValuePair<string, Expr>> kwargs = [];
            if (Accept("("))
            {
                (args, kwargs) = ParseCallArgs();
            }

            Expr.Filter filter = new(name.Line, input, name.Value, fn, args, kwargs);
            chain.Add(filter);
            input = filter;
        }

        return chain;
    }

    private Expr.Test ParseTest(Expr value)
    {
        int line = Next().Line;
        bool negated = AcceptName("not");
        Token name = Expect(TokenKind.Name);
        if (!BuiltinTests.TryGet(name.Value, out BuiltinTests.TestFunction? fn))
        {
            throw Error($"unknown or unsupported test '{name.Value}'", name.Line);
        }

        List<Expr> args = [];
        if (Accept("("))
        {
            (args, List<KeyValuePair<string, Expr>> kwargs) = ParseCallArgs();
            if (kwargs.Count > 0)
            {
                throw Error($"test '{name.Value}' takes no keyword arguments");
            }
        }
        else if (Current.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                 || Current.IsOperator("[") || Current.IsOperator("{"))
        {
            if (!(Current.Kind == TokenKind.Name && Current.Value is "else" or "or" or "and" or "if" or "is" or "not" or "in"))
            {
                args.Add(ParsePostfix(ParsePrimary()));
            }
        }

        return new Expr.Test(line, value, fn, args, negated);
    }
}
