namespace Dynamo.Llm.ChatTemplates;

/// <summary>Evaluated arguments of a call, filter or test: positional values and keyword values.</summary>
internal sealed class CallArgs
{
    public static readonly CallArgs Empty = new([], null);

    public CallArgs(IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?>? keywords)
    {
        Positional = positional;
        Keywords = keywords;
    }

    public IReadOnlyList<object?> Positional { get; }

    public IReadOnlyDictionary<string, object?>? Keywords { get; }

    public int Count => Positional.Count;

    /// <summary>The argument at <paramref name="index"/> or named <paramref name="name"/>, else <paramref name="fallback"/>.</summary>
    public object? Get(int index, string name, object? fallback = null)
    {
        if (index < Positional.Count)
        {
            return Positional[index];
        }

        return Keywords is not null && Keywords.TryGetValue(name, out object? v) ? v : fallback;
    }

    public bool Has(int index, string name) =>
        index < Positional.Count || (Keywords is not null && Keywords.ContainsKey(name));
}
