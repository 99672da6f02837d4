namespace Dynamo.Llm.ChatTemplates;

/// <summary>Kinds of tokens produced by <see cref="TemplateLexer"/>.</summary>
internal enum TokenKind
{
    /// <summary>Literal template text outside any tag.</summary>
    Text,

    /// <summary><c>{{</c></summary>
    VariableBegin,

    /// <summary><c>}}</c></summary>
    VariableEnd,

    /// <summary><c>{%</c></summary>
    BlockBegin,

    /// <summary><c>%}</c></summary>
    BlockEnd,
    Name,
    String,
    Integer,
    Float,

    /// <summary>Punctuation or an operator; the text is in <see cref="Token.Value"/>.</summary>
    Operator,
    End,
}
