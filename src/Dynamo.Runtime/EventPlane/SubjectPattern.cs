namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// NATS subjects: tokens separated by '.', none empty or with white space. In a subscription pattern a token
/// '*' matches any one token and a last token '&gt;' one or more; a subject that is published has no
/// wildcard token ('*' or '&gt;' inside a longer token is an ordinary character, as in NATS).
/// </summary>
internal static class SubjectPattern
{
    public static bool Matches(string pattern, string subject)
    {
        ReadOnlySpan<char> p = pattern;
        ReadOnlySpan<char> s = subject;
        while (true)
        {
            int pe = p.IndexOf('.');
            ReadOnlySpan<char> pt = pe < 0 ? p : p[..pe];
            if (pt is ">")
            {
                return s.Length > 0;
            }

            if (s.Length == 0)
            {
                return false;
            }

            int se = s.IndexOf('.');
            ReadOnlySpan<char> st = se < 0 ? s : s[..se];
            if (pt is not "*" && !pt.SequenceEqual(st))
            {
                return false;
            }

            if (pe < 0 || se < 0)
            {
                return pe < 0 && se < 0;
            }

            p = p[(pe + 1)..];
            s = s[(se + 1)..];
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="subject"/> may be published to.</summary>
    public static void ValidateSubject(string subject, string paramName) => Validate(subject, paramName, wildcards: false);

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="pattern"/> may be subscribed to.</summary>
    public static void ValidatePattern(string pattern, string paramName) => Validate(pattern, paramName, wildcards: true);

    private static void Validate(string value, string paramName, bool wildcards)
    {
        ArgumentException.ThrowIfNullOrEmpty(value, paramName);
        string[] tokens = value.Split('.');
        for (int i = 0; i < tokens.Length; i++)
        {
            string token = tokens[i];
            string? problem =
                token.Length == 0 ? "has an empty token" :
                token.Any(char.IsWhiteSpace) ? "contains white space" :
                !wildcards && token is "*" or ">" ? "has a wildcard token ('*' or '>'): only a subscription may" :
                token is ">" && i != tokens.Length - 1 ? "has '>' before its last token" :
                null;
            if (problem is not null)
            {
                throw new ArgumentException($"subject '{value}' {problem}", paramName);
            }
        }
    }
}
