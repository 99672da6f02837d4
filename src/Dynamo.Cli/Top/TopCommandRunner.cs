using System.Diagnostics;
using System.Net;
using Spectre.Console;

namespace Dynamo.Cli.Top;

/// <summary>
/// Reads a frontend's <c>/metrics</c> every interval and draws <see cref="TopView"/>: in place in a terminal
/// (Spectre.Console's live display) until Ctrl-C, or once (<see cref="TopOptions.Once"/>) after two reads.
/// The first read failing is a one-line error; a later one is shown under the table and the view goes on.
/// </summary>
internal static class TopCommandRunner
{
    public static async Task<int> RunAsync(TopOptions options, IAnsiConsole console, CancellationToken cancellationToken = default)
    {
        options.Validate();
        // Generous: a loaded frontend (or a loaded machine) can take seconds to render its /metrics.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(Math.Max(15, options.IntervalSeconds)) };
        var metrics = new Uri(options.Url, "metrics");
        var clock = Stopwatch.StartNew();
        TimeSpan interval = TimeSpan.FromSeconds(options.IntervalSeconds);

        MetricsScrape first = await ReadAsync(http, metrics, clock, cancellationToken)
            ?? throw new CliUsageException($"--url {options.Url}: {metrics} is not a Dynamo frontend's /metrics (no dynamo_frontend_* series)");
        if (options.Once)
        {
            await Task.Delay(interval, cancellationToken);
            MetricsScrape second = await ReadAsync(http, metrics, clock, cancellationToken) ?? first;
            console.Write(TopView.Render(options.Url, first, second));
            return 0;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            await console.Live(TopView.Render(options.Url, null, first)).AutoClear(false).StartAsync(async live =>
            {
                MetricsScrape previous = first;
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        await Task.Delay(interval, stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }

                    try
                    {
                        MetricsScrape? next = await ReadAsync(http, metrics, clock, stop.Token);
                        live.UpdateTarget(next is null ? TopView.Render(options.Url, null, previous, "not a Dynamo frontend's /metrics any more")
                            : TopView.Render(options.Url, previous, next));
                        previous = next ?? previous;
                    }
                    catch (CliUsageException e)
                    {
                        live.UpdateTarget(TopView.Render(options.Url, null, previous, $"{DateTime.Now:HH:mm:ss} {e.Message}"));
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                        break;
                    }

                    live.Refresh();
                }
            });
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        return 0;
    }

    /// <summary>One read; null when it answered without any Dynamo frontend series; <see cref="CliUsageException"/> when it did not answer 200.</summary>
    private static async Task<MetricsScrape?> ReadAsync(HttpClient http, Uri metrics, Stopwatch clock, CancellationToken cancellationToken)
    {
        string text;
        try
        {
            using HttpResponseMessage response = await http.GetAsync(metrics, cancellationToken);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new CliUsageException($"--url: {metrics} answered {(int)response.StatusCode} {response.ReasonPhrase}");
            }

            text = await response.Content.ReadAsStringAsync(cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw new CliUsageException($"--url: {metrics} does not answer ({CliErrors.Describe(e)})");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CliUsageException($"--url: {metrics} does not answer (no reply within {http.Timeout.TotalSeconds:0} s)");
        }

        MetricsScrape scrape = MetricsScrape.Parse(text, clock.Elapsed);
        return scrape.IsFrontend ? scrape : null;
    }
}
