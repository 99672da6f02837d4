namespace Dynamo.Components.Parallel;

/// <summary>How the ranks of a group move data between them (<c>--collectives-transport</c>).</summary>
public enum CollectiveTransport
{
    /// <summary>Shared memory among the ranks of one host, TCP between hosts (the default).</summary>
    Auto = 0,

    /// <summary>TCP between every two ranks, even on one host (loopback).</summary>
    Tcp = 1,
}
