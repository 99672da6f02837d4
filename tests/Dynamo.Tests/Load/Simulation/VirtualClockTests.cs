using Dynamo.Load.Simulation;

namespace Dynamo.Tests.Load.Simulation;

public class VirtualClockTests
{
    [Fact]
    public void RunNext_EventsAndTimers_RunInTimeThenSchedulingOrder()
    {
        var clock = new VirtualClock();
        var seen = new List<string>();
        clock.At(TimeSpan.FromSeconds(2), () => seen.Add($"b@{clock.Now.TotalSeconds}"));
        clock.At(TimeSpan.FromSeconds(1), () => seen.Add($"a@{clock.Now.TotalSeconds}"));
        clock.At(TimeSpan.FromSeconds(2), () => seen.Add($"c@{clock.Now.TotalSeconds}"));
        using ITimer timer = clock.CreateTimer(_ => seen.Add($"t@{clock.Now.TotalSeconds}"), null, TimeSpan.FromSeconds(1.5), Timeout.InfiniteTimeSpan);

        while (clock.RunNext())
        {
        }

        Assert.Equal(["a@1", "t@1.5", "b@2", "c@2"], seen);
        Assert.Equal(TimeSpan.FromSeconds(2), clock.Now);
        Assert.Equal(TimeSpan.FromSeconds(2).Ticks, clock.GetTimestamp());
    }

    [Fact]
    public void Timer_ChangedOrDisposed_FiresOnlyAsLastArmed()
    {
        var clock = new VirtualClock();
        int fired = 0;
        ITimer moved = clock.CreateTimer(_ => fired += 1, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        ITimer disposed = clock.CreateTimer(_ => fired += 100, null, TimeSpan.FromSeconds(1), Timeout.InfiniteTimeSpan);
        moved.Change(TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);
        disposed.Dispose();

        while (clock.RunNext())
        {
        }

        Assert.Equal(1, fired);
        Assert.Equal(TimeSpan.FromSeconds(5), clock.Now);
    }

    [Fact]
    public async Task TaskDelay_OnTheVirtualClock_CompletesWhenTheClockPassesIt()
    {
        var clock = new VirtualClock();
        Task delay = Task.Delay(TimeSpan.FromHours(1), clock);

        Assert.False(delay.IsCompleted);
        Assert.True(clock.RunNext());
        await delay.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(TimeSpan.FromHours(1), clock.Now);
    }
}
