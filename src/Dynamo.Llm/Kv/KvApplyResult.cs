namespace Dynamo.Llm.Kv;

/// <summary>What <see cref="KvCachedSet.Apply"/> did with an event.</summary>
public enum KvApplyResult
{
    /// <summary>The event was the next one (last id + 1) and is applied.</summary>
    Applied = 0,

    /// <summary>Events are missing before this one; nothing was applied. Catch up with
    /// <see cref="KvEventLog.TryGetSince"/> or, failing that, a <see cref="KvEventDump"/>.</summary>
    Gap = 1,

    /// <summary>The event's id is not after the last applied one (a duplicate, or older than a loaded
    /// dump); it was ignored.</summary>
    Stale = 2,
}
