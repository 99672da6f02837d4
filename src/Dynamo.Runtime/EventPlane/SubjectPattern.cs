namespace Dynamo.Runtime.EventPlane;

/// <summary>NATS subject matching: tokens separated by '.', '*' matches one token, '&gt;' (last) one or more.</summary>
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
}
