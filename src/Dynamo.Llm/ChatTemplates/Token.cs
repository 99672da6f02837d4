namespace Dynamo.Llm.ChatTemplates;

/// <summary>A lexer token. <see cref="Value"/> is the text (decoded for strings); <see cref="Number"/>
/// holds the long or double of a numeric literal.</summary>
internal readonly record struct Token(TokenKind Kind, string Value, int Line, object? Number = null)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsOperator(string value) => Kind == TokenKind.Operator && Value == value;

    public bool IsName(string value) => Kind == TokenKind.Name && Value == value;

    /// <summary>How the token reads in an error message.</summary>
    public string Describe() => Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.Text => "template text",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}
