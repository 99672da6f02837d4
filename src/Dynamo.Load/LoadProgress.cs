using System.Globalization;
using Dynamo.Load.Client;
using Spectre.Console;

namespace Dynamo.Load;

/// <summary>
/// A live progress bar on a terminal, drawn by Spectre.Console's progress display (the library `dynamo top` uses):
/// the bar, then <c>37/100  ok 35  err 2  12.3 s  456.7 tok/s</c>. Counters are updated from many workers
/// (Interlocked); the display refreshes every <c>interval</c>; <see cref="DisposeAsync"/> draws the last state and
/// leaves it on screen. Shown only when the output is a terminal (the commands decide).
/// </summary>
internal sealed class LoadProgress : IAsyncDisposable
{
    private readonly int _total;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _done, _ok, _failed;
    private long _tokens;

    public LoadProgress(TextWriter output, int total, TimeProvider time, TimeSpan interval)
    {
        _total = total;
        _time = time;
        _start = time.GetTimestamp();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes,
            Interactive = InteractionSupport.Yes,
            ColorSystem = ColorSystemSupport.Standard,
            Out = new AnsiConsoleOutput(output),
        });
        Progress progress = console.Progress()
            .AutoClear(false)
            .AutoRefresh(false)
            .Columns(new ProgressBarColumn { Width = 30 }, new TaskDescriptionColumn { Alignment = Justify.Left });
        _loop = progress.StartAsync(context => RunAsync(context, interval));
    }

    public void Completed(RequestResult result)
    {
        Interlocked.Increment(ref _done);
        if (result.Outcome == RequestOutcome.Ok)
        {
            Interlocked.Increment(ref _ok);
            Interlocked.Add(ref _tokens, result.OutputTokens);
        }
        else
        {
            Interlocked.Increment(ref _failed);
        }
    }

    /// <summary>The figures beside the bar, as drawn now.</summary>
    public string Line()
    {
        int done = Volatile.Read(ref _done);
        double elapsed = _time.GetElapsedTime(_start).TotalSeconds;
        double rate = elapsed > 0 ? Interlocked.Read(ref _tokens) / elapsed : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"{done}/{_total}  ok {Volatile.Read(ref _ok)}  err {Volatile.Read(ref _failed)}  {elapsed:F1} s  {rate:F1} tok/s");
    }

    private async Task RunAsync(ProgressContext context, TimeSpan interval)
    {
        ProgressTask task = context.AddTask(Markup.Escape(Line()), maxValue: Math.Max(_total, 1));
        while (true)
        {
            task.Value = Math.Min(Volatile.Read(ref _done), Math.Max(_total, 1));
            task.Description = Markup.Escape(Line());
            context.Refresh();
            try
            {
                await Task.Delay(interval, _time, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        task.Value = Math.Min(Volatile.Read(ref _done), Math.Max(_total, 1));
        task.Description = Markup.Escape(Line());
        context.Refresh();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
