using System.Diagnostics;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// One-shot timers that fire on a thread of their own instead of the thread pool. A call's time limit must
/// hold when the pool is saturated (its threads blocked elsewhere in the process): a pool timer then fires
/// only once the pool gets to it (measured here: a 2 s <see cref="Timer"/> fired after 18 s with 24 pool
/// threads blocked). One background thread keeps the pending due times in a heap; the callbacks of expired
/// timers run on a new short-lived thread, so a slow callback (it may run an awaiting caller's continuation)
/// delays no other timer. Expiry is the rare case (a call that did not answer in time); a timer disposed
/// before it is due costs a heap entry until then.
/// </summary>
internal static class DedicatedTimer
{
    private static readonly Lock Gate = new();
    private static readonly PriorityQueue<Entry, long> Pending = new();
    private static readonly AutoResetEvent Wake = new(false);
    private static Thread? _thread;

    /// <summary>Runs <paramref name="callback"/> once after <paramref name="delay"/> unless the result is disposed first.</summary>
    public static IDisposable Start(TimeSpan delay, Action callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        long due = Stopwatch.GetTimestamp() + (long)(Math.Max(0, delay.TotalSeconds) * Stopwatch.Frequency);
        var entry = new Entry(callback);
        bool earliest;
        lock (Gate)
        {
            earliest = !Pending.TryPeek(out _, out long head) || due < head;
            Pending.Enqueue(entry, due);
            if (_thread is null)
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "dynamo-deadlines" };
                _thread.Start();
            }
        }

        if (earliest)
        {
            Wake.Set();
        }

        return entry;
    }

    private static void Run()
    {
        var expired = new List<Entry>();
        while (true)
        {
            int waitMs = Timeout.Infinite;
            lock (Gate)
            {
                long now = Stopwatch.GetTimestamp();
                while (Pending.TryPeek(out Entry? entry, out long due) && (entry.IsDisposed || due <= now))
                {
                    Pending.Dequeue();
                    if (!entry.IsDisposed)
                    {
                        expired.Add(entry);
                    }
                }

                if (Pending.TryPeek(out _, out long next))
                {
                    waitMs = (int)Math.Clamp((next - now) * 1000 / Stopwatch.Frequency + 1, 1, int.MaxValue);
                }
            }

            if (expired.Count > 0)
            {
                Entry[] batch = [.. expired];
                expired.Clear();
                new Thread(() => Fire(batch)) { IsBackground = true, Name = "dynamo-deadline-expired" }.Start();
            }

            Wake.WaitOne(waitMs);
        }
    }

    private static void Fire(Entry[] batch)
    {
        foreach (Entry entry in batch)
        {
            entry.Fire();
        }
    }

    private sealed class Entry(Action callback) : IDisposable
    {
        private int _state;

        public bool IsDisposed => Volatile.Read(ref _state) != 0;

        public void Fire()
        {
            if (Interlocked.Exchange(ref _state, 1) == 0)
            {
                callback();
            }
        }

        public void Dispose() => Volatile.Write(ref _state, 1);
    }
}
