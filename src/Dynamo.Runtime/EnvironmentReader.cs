namespace Dynamo.Runtime;

/// <summary>
/// Reads settings from environment variables through a function (tests pass their own); a blank variable is
/// unset. Every failure is an <see cref="ArgumentException"/> naming the variable, never showing a secret's value.
/// </summary>
internal readonly struct EnvironmentReader(Func<string, string?> getVariable)
{
    /// <summary>The value, trimmed; null when unset or blank.</summary>
    public string? Value(string name) => getVariable(name) is { } value && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;

    /// <summary>A secret (password, token): as it is, spaces included; null when unset or empty.</summary>
    public string? Secret(string name) => getVariable(name) is { Length: > 0 } value ? value : null;

    /// <summary>Two variables that go together (a user and its password, a certificate and its key): both or neither.</summary>
    public (string? First, string? Second) Pair(string first, string second, bool secondIsSecret = false)
    {
        string? a = Value(first);
        string? b = secondIsSecret ? Secret(second) : Value(second);
        return (a is null) == (b is null) ? (a, b)
            : throw new ArgumentException(a is null ? $"{second} is set but {first} is not: set both" : $"{first} is set but {second} is not: set both");
    }

    /// <summary>The path in <paramref name="name"/>, which must name an existing file; null when unset.</summary>
    public string? ExistingFile(string name, string? expected = null) => Value(name) switch
    {
        null => null,
        { } path when File.Exists(path) => path,
        { } path => throw new ArgumentException($"{name}: {path} does not exist{(expected is null ? "" : $" (expected {expected})")}"),
    };
}
