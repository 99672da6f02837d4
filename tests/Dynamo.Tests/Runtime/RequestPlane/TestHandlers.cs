using System.Runtime.CompilerServices;
using System.Text;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>Request handlers the request-plane tests share.</summary>
internal static class TestHandlers
{
    /// <summary>Yields 0 .. n-1 as 4-byte integers.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> Count(int n, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (int i = 0; i < n; i++)
        {
            ct.ThrowIfCancellationRequested();
            yield return BitConverter.GetBytes(i);
        }

        await Task.CompletedTask;
    }

    /// <summary>Yields one UTF-8 string.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> One(string text)
    {
        yield return Encoding.UTF8.GetBytes(text);
        await Task.CompletedTask;
    }

    /// <summary>Yields <paramref name="count"/> one-byte responses, then throws <paramref name="error"/>.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> ThrowAfter(int count, Exception error, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (int i = 0; i < count; i++)
        {
            yield return new byte[] { (byte)i };
        }

        await Task.Yield();
        throw error;
    }

    /// <summary>Yields 0, 1, 2, ... every <paramref name="every"/> until cancelled; then completes <paramref name="cancelled"/>.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> Forever(TimeSpan every, TaskCompletionSource? cancelled, [EnumeratorCancellation] CancellationToken ct = default)
    {
        // Observed in finally, not with ct.Register: cancellation callbacks run last-registered first, so
        // Task.Delay's callback can end this iterator (disposing a registration) before a registered
        // callback runs; the token's state is set before any callback runs.
        try
        {
            for (int i = 0; ; i++)
            {
                yield return BitConverter.GetBytes(i);
                await Task.Delay(every, ct);
            }
        }
        finally
        {
            if (ct.IsCancellationRequested)
            {
                cancelled?.TrySetResult();
            }
        }
    }

    /// <summary>Yields one-byte responses as fast as it may, counting them in <paramref name="produced"/>, until cancelled.</summary>
    public static async IAsyncEnumerable<ReadOnlyMemory<byte>> Endless(StrongBox<int> produced, TaskCompletionSource cancelled, [EnumeratorCancellation] CancellationToken ct = default)
    {
        try
        {
            while (true)
            {
                Interlocked.Increment(ref produced.Value);
                yield return new byte[] { 7 };
                await Task.Yield();
            }
        }
        finally
        {
            if (ct.IsCancellationRequested)
            {
                cancelled.TrySetResult();
            }
        }
    }

    /// <summary>Reads a stream to its end.</summary>
    public static async Task DrainAsync(IAsyncEnumerable<ReadOnlyMemory<byte>> stream)
    {
        await foreach (ReadOnlyMemory<byte> _ in stream)
        {
        }
    }

    /// <summary>Reads a stream of UTF-8 strings to its end.</summary>
    public static async Task<List<string>> StringsAsync(IAsyncEnumerable<ReadOnlyMemory<byte>> stream)
    {
        var items = new List<string>();
        await foreach (ReadOnlyMemory<byte> item in stream)
        {
            items.Add(Encoding.UTF8.GetString(item.Span));
        }

        return items;
    }
}
