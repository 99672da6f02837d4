namespace Dynamo.Components.Parallel;

/// <summary>
/// This machine's identity for the collectives: ranks with the same id are taken to share /dev/shm. The kernel's boot
/// id (new at every boot, the same for every process and container of one kernel) and the host name (two containers
/// of one kernel differ there, and usually do not share /dev/shm).
/// </summary>
internal static class HostIdentity
{
    public static string Local { get; } = Compute();

    private static string Compute()
    {
        string boot = "";
        try
        {
            boot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not Linux: the host name alone.
        }

        return $"{Environment.MachineName}/{boot}";
    }
}
