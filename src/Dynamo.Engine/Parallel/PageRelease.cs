using System.Runtime.InteropServices;

namespace Dynamo.Engine.Parallel;

/// <summary>
/// Drops the pages of a read-only file mapping from this process's resident set (madvise MADV_DONTNEED) after a rank
/// copied its part out of them; they come back from the page cache if touched again. A no-op where it is not Linux.
/// </summary>
internal static unsafe partial class PageRelease
{
    private const int MadvDontNeed = 4;

    public static void DontNeed(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
        {
            return;
        }

        long page = Environment.SystemPageSize;
        long first = ((long)start + page - 1) / page * page;
        long end = ((long)start + length) / page * page;
        if (end > first)
        {
            // Only whole pages inside the tensor; a failure costs memory, never correctness.
            _ = Madvise((nint)first, (nuint)(end - first), MadvDontNeed);
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
