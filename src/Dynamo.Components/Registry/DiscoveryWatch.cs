using Dynamo.Runtime.Discovery;

namespace Dynamo.Components.Registry;

/// <summary>How the registry's followers of discovery prefixes (model cards, disaggregation settings) watch.</summary>
internal static class DiscoveryWatch
{
    /// <summary>
    /// Follows <paramref name="prefix"/> until cancelled: every event to <paramref name="apply"/> in order; a watch
    /// that fails is reported to <paramref name="failed"/> and started again after a second (the store then
    /// replays the prefix, ending in <see cref="DiscoveryEventKind.Synced"/>, so the follower's table heals).
    /// </summary>
    public static async Task RunAsync(IDiscovery discovery, string prefix, Func<DiscoveryEvent, CancellationToken, ValueTask> apply, Action<Exception> failed, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await foreach (DiscoveryEvent e in discovery.WatchPrefixAsync(prefix, cancellationToken).ConfigureAwait(false))
                {
                    await apply(e, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                failed(e);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
