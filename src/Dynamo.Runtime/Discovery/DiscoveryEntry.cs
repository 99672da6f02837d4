namespace Dynamo.Runtime.Discovery;

/// <summary>One key and its value.</summary>
/// <param name="Key">The full key.</param>
/// <param name="Value">The raw value (JSON for every record this project writes).</param>
/// <param name="Revision">The store's modification revision (etcd mod_revision; a counter in memory).</param>
public sealed record DiscoveryEntry(string Key, ReadOnlyMemory<byte> Value, long Revision);
