namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Cuts generated text at the first stop string, so that no stop string, not even a part of one, ever
/// reaches the client: text that could still become the start of a stop string is held back until
/// the next piece shows it cannot.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly IReadOnlyList<string> _stops;
    private readonly int _longest;
    private string _pending = string.Empty;

    public StopStringMatcher(IReadOnlyList<string> stops)
    {
        _stops = stops;
        _longest = stops.Count == 0 ? 0 : stops.Max(s => s.Length);
    }

    /// <summary>True once a stop string was found; every later call returns nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds newly decoded text; returns what can be shown now.</summary>
    public string Push(string text)
    {
        if (Stopped || text.Length == 0)
        {
            return string.Empty;
        }

        if (_longest == 0)
        {
            return text;
        }

        string buffer = _pending + text;
        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
            }
        }

        if (cut >= 0)
        {
            Stopped = true;
            _pending = string.Empty;
            return buffer[..cut];
        }

        // Hold back the longest suffix that is a proper prefix of some stop string.
        int hold = 0;
        int maxHold = Math.Min(buffer.Length, _longest - 1);
        for (int len = maxHold; len > 0; len--)
        {
            if (IsStopPrefix(buffer.AsSpan(buffer.Length - len)))
            {
                hold = len;
                break;
            }
        }

        _pending = buffer[(buffer.Length - hold)..];
        return buffer[..(buffer.Length - hold)];
    }

    private bool IsStopPrefix(ReadOnlySpan<char> suffix)
    {
        foreach (string stop in _stops)
        {
            if (stop.AsSpan().StartsWith(suffix, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>At the end of generation: the held-back text, which turned out not to be a stop string.</summary>
    public string Flush()
    {
        string rest = Stopped ? string.Empty : _pending;
        _pending = string.Empty;
        return rest;
    }
}
