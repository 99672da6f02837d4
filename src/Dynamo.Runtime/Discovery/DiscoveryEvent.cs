namespace Dynamo.Runtime.Discovery;

/// <summary>What happened to a key (or that the initial listing is complete).</summary>
public enum DiscoveryEventKind
{
    /// <summary>The key was created or changed.</summary>
    Put = 0,

    /// <summary>The key was deleted or its lease expired.</summary>
    Delete = 1,

    /// <summary>Everything that existed when the watch (re)started has been reported; Key is the prefix.</summary>
    Synced = 2,
}

/// <summary>One event of <see cref="IDiscovery.WatchPrefixAsync"/>.</summary>
/// <param name="Kind">Put, Delete or Synced.</param>
/// <param name="Key">The key (the watched prefix for Synced).</param>
/// <param name="Value">The new value for Put; empty otherwise.</param>
public sealed record DiscoveryEvent(DiscoveryEventKind Kind, string Key, ReadOnlyMemory<byte> Value);
