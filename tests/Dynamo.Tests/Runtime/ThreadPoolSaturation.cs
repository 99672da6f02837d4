namespace Dynamo.Tests.Runtime;

/// <summary>
/// Blocks every thread-pool thread, and those the pool adds meanwhile, until disposed (or at most a minute):
/// a process whose pool threads are all blocked elsewhere. Only for tests in the timing collection.
/// </summary>
internal sealed class ThreadPoolSaturation : IDisposable
{
    private static readonly TimeSpan Longest = TimeSpan.FromMinutes(1);
    private readonly ManualResetEventSlim _release = new();

    /// <summary>Queues one blocking work item per pool thread plus <paramref name="extra"/>.</summary>
    public ThreadPoolSaturation(int extra = 32)
    {
        int count = ThreadPool.ThreadCount + extra;
        for (int i = 0; i < count; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static s => ((ManualResetEventSlim)s!).Wait(Longest), _release, preferLocal: false);
        }
    }

    public void Dispose() => _release.Set();
}
