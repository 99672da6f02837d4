namespace Dynamo.Load.Simulation;

/// <summary>
/// How long the calling thread has waited, runnable, for a CPU (Linux: the second field of
/// <c>/proc/thread-self/schedstat</c>, nanoseconds); -1 where unknown. A routing decision during which it grew was
/// interrupted by other work on the machine, and its wall time says more about the machine than about the router.
/// </summary>
internal static class RunQueueWait
{
    private const string Path = "/proc/thread-self/schedstat";

    private static readonly bool Available = OperatingSystem.IsLinux() && File.Exists(Path);

    public static long Nanoseconds()
    {
        if (!Available)
        {
            return -1;
        }

        try
        {
            string text = File.ReadAllText(Path);
            string[] fields = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return fields.Length > 1 && long.TryParse(fields[1], out long ns) ? ns : -1;
        }
        catch (IOException)
        {
            return -1;
        }
    }
}
