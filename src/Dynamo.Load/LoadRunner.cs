using Dynamo.Load.Client;
using Dynamo.Load.Workloads;

namespace Dynamo.Load;

/// <summary>
/// Runs conversations against the server with at most <see cref="LoadOptions.Concurrency"/> requests in
/// flight: that many workers each take the next conversation (in list order, so trace arrivals stay in
/// order), wait for its arrival time, then send its turns one after the other, each turn carrying the
/// earlier successful turns and their answers. A failed turn is left out of the history. Cancellation
/// stops sending; requests cut by it are not counted.
/// </summary>
internal sealed class LoadRunner(LoadOptions options, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Called after every request, from the worker that sent it.</summary>
    public Action<RequestResult>? OnCompleted { get; init; }

    /// <summary>The results in completion order and the run's wall time in seconds.</summary>
    public async Task<(List<RequestResult> Results, double Seconds, bool Interrupted)> RunAsync(IReadOnlyList<LoadConversation> conversations, CancellationToken cancellationToken = default)
    {
        long origin = _time.GetTimestamp();
        using var client = new ChatStreamClient(options.Url, options.Model, _time, origin, options.Concurrency);
        var results = new List<RequestResult>();
        int next = -1;

        async Task WorkerAsync()
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) < conversations.Count)
            {
                LoadConversation conversation = conversations[index];
                TimeSpan wait = conversation.Arrival - _time.GetElapsedTime(origin);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, _time, cancellationToken).ConfigureAwait(false);
                }

                var history = new List<ChatMessage>();
                if (conversation.System is string system)
                {
                    history.Add(new ChatMessage("system", system));
                }

                foreach (LoadTurn turn in conversation.Turns)
                {
                    var user = new ChatMessage("user", turn.User);
                    RequestResult result = turn.PromptTokenIds is { } ids
                        ? await client.SendTokensAsync(ids, turn.MaxTokens, cancellationToken).ConfigureAwait(false)
                        : await client.SendAsync([.. history, user], turn.MaxTokens, cancellationToken).ConfigureAwait(false);
                    lock (results)
                    {
                        results.Add(result);
                    }

                    OnCompleted?.Invoke(result);
                    if (result.Outcome == RequestOutcome.Ok)
                    {
                        history.Add(user);
                        history.Add(new ChatMessage("assistant", result.Text));
                    }
                }
            }
        }

        Task[] workers = [.. Enumerable.Range(0, Math.Min(options.Concurrency, conversations.Count)).Select(_ => Task.Run(WorkerAsync, CancellationToken.None))];
        bool interrupted = false;
        try
        {
            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            interrupted = true;
        }

        double seconds = _time.GetElapsedTime(origin).TotalSeconds;
        lock (results)
        {
            return ([.. results], seconds, interrupted);
        }
    }
}
