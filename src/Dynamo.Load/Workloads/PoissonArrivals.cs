namespace Dynamo.Load.Workloads;

/// <summary>
/// <c>--request-rate R</c>: the conversations of <see cref="Inner"/> start at Poisson arrivals, R per second
/// on average (exponential gaps drawn from the seed), instead of as fast as the concurrency allows; a
/// conversation's later turns still follow its previous answer. With a concurrency well above
/// R x latency, the offered load is the same whatever the server does (open loop), so router modes
/// compare at the same throughput.
/// </summary>
internal sealed class PoissonArrivals(IWorkload inner, double rate) : IWorkload
{
    public IWorkload Inner { get; } = inner;

    public double Rate { get; } = rate;

    public string Name => Inner.Name;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        IReadOnlyList<LoadConversation> conversations = Inner.Build(options);
        var random = new Random(unchecked(options.Seed * 31 + 7));
        var timed = new LoadConversation[conversations.Count];
        double seconds = 0;
        for (int i = 0; i < timed.Length; i++)
        {
            timed[i] = conversations[i] with { Arrival = TimeSpan.FromSeconds(seconds) };
            seconds += -Math.Log(1 - random.NextDouble()) / Rate;
        }

        return timed;
    }
}
