using System.Diagnostics;

namespace Dynamo.Tests.Runtime;

/// <summary>Waits for a condition, never for a duration: polls it and fails naming what did not happen.</summary>
internal static class Eventually
{
    /// <summary>How long a test waits for something that normally takes milliseconds.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    public static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? Patience;
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
            {
                Assert.Fail($"timed out after {limit.TotalSeconds:0.###} s waiting for {what}");
            }

            await Task.Delay(10);
        }
    }
}
