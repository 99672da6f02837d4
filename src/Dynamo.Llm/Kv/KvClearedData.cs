namespace Dynamo.Llm.Kv;

/// <summary>Every block of the worker's cache was dropped. On the wire the string <c>"cleared"</c>.</summary>
public sealed record KvClearedData : KvEventData
{
    /// <summary>The one value needed; all instances are equal.</summary>
    public static KvClearedData Instance { get; } = new();
}
