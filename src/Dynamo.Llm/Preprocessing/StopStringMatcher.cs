using System.Text;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// Cuts generated text at the first stop string, so that no stop string, not even a part of one, ever
/// reaches the client: text that could still become the start of a stop string is held back until
/// the next piece shows it cannot. The held text lives in a buffer of its own, reused piece after piece.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly IReadOnlyList<string> _stops;
    private readonly int _longest;
    private char[] _buffer = [];
    private int _pending;

    public StopStringMatcher(IReadOnlyList<string> stops)
    {
        ArgumentNullException.ThrowIfNull(stops);
        _stops = stops;
        foreach (string stop in stops)
        {
            _longest = Math.Max(_longest, stop.Length);
        }
    }

    /// <summary>True once a stop string was found; every later call returns nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds newly decoded text; returns what can be shown now.</summary>
    public string Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_longest == 0 && !Stopped)
        {
            return text;
        }

        var shown = new StringBuilder();
        Push(text, shown);
        return shown.ToString();
    }

    /// <summary>Adds newly decoded text; appends what can be shown now to <paramref name="shown"/>.</summary>
    internal void Push(ReadOnlySpan<char> text, StringBuilder shown)
    {
        if (Stopped || text.IsEmpty)
        {
            return;
        }

        if (_longest == 0)
        {
            shown.Append(text);
            return;
        }

        int length = _pending + text.Length;
        if (_buffer.Length < length)
        {
            Array.Resize(ref _buffer, Math.Max(length, 2 * _buffer.Length));
        }

        text.CopyTo(_buffer.AsSpan(_pending));
        Span<char> buffer = _buffer.AsSpan(0, length);
        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = ((ReadOnlySpan<char>)buffer).IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
            }
        }

        if (cut >= 0)
        {
            Stopped = true;
            _pending = 0;
            shown.Append(buffer[..cut]);
            return;
        }

        // Hold back the longest suffix that is a proper prefix of some stop string.
        int hold = 0;
        int maxHold = Math.Min(length, _longest - 1);
        for (int len = maxHold; len > 0; len--)
        {
            if (IsStopPrefix(buffer[(length - len)..]))
            {
                hold = len;
                break;
            }
        }

        shown.Append(buffer[..(length - hold)]);
        buffer[(length - hold)..].CopyTo(_buffer);
        _pending = hold;
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
        var rest = new StringBuilder();
        Flush(rest);
        return rest.ToString();
    }

    /// <summary>At the end of generation: appends the held-back text, which turned out not to be a stop string.</summary>
    internal void Flush(StringBuilder rest)
    {
        if (!Stopped)
        {
            rest.Append(_buffer, 0, _pending);
        }

        _pending = 0;
    }
}
