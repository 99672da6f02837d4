namespace Dynamo.Runtime.Discovery;

/// <summary>How a key is written.</summary>
public sealed record DiscoveryPutOptions
{
    /// <summary>Bound to the process's primary lease: disappears when the process stops or dies.</summary>
    public static DiscoveryPutOptions LeasedKey { get; } = new() { Leased = true };

    /// <summary>Stays until deleted (content-addressed blobs, for example).</summary>
    public static DiscoveryPutOptions Persistent { get; } = new() { Leased = false };

    /// <summary>Whether the key is bound to the primary lease.</summary>
    public bool Leased { get; init; }
}
