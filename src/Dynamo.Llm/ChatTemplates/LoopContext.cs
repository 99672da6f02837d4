namespace Dynamo.Llm.ChatTemplates;

/// <summary>The <c>loop</c> variable inside a for loop.</summary>
internal sealed class LoopContext
{
    private readonly IReadOnlyList<object?> _items;

    public LoopContext(IReadOnlyList<object?> items)
    {
        _items = items;
    }

    /// <summary>Zero-based position of the current item.</summary>
    public int Index0 { get; set; }

    /// <summary>Reads a loop attribute such as <c>index</c> or <c>last</c>; undefined for unknown names.</summary>
    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(_items.Count - Index0),
        "revindex0" => (long)(_items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == _items.Count - 1,
        "length" => (long)_items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? _items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < _items.Count ? _items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (args, _) =>
            args.Count == 0 ? throw new ChatTemplateException("loop.cycle() needs at least one argument") : args.Positional[Index0 % args.Count]),
        _ => new Undefined($"'LoopContext' object has no attribute '{name}'"),
    };

    public override string ToString() => $"<LoopContext {Index0 + 1}/{_items.Count}>";
}
