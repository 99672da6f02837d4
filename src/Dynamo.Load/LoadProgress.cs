using System.Globalization;
using Dynamo.Load.Client;

namespace Dynamo.Load;

/// <summary>
/// A one-line progress bar redrawn in place (carriage return) on a terminal:
/// <c>[#####-----] 37/100  ok 35  err 2  12.3 s  456.7 tok/s</c>. Counters are updated from many
/// workers (Interlocked); a timer redraws; <see cref="DisposeAsync"/> draws the last state and ends the line.
/// </summary>
internal sealed class LoadProgress : IAsyncDisposable
{
    private const int Width = 30;
    private readonly TextWriter _output;
    private readonly int _total;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _done, _ok, _failed;
    private long _tokens;

    public LoadProgress(TextWriter output, int total, TimeProvider time, TimeSpan interval)
    {
        _output = output;
        _total = total;
        _time = time;
        _start = time.GetTimestamp();
        _loop = RunAsync(interval);
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

    /// <summary>The line as drawn now.</summary>
    public string Line()
    {
        int done = Volatile.Read(ref _done);
        double elapsed = _time.GetElapsedTime(_start).TotalSeconds;
        int filled = _total == 0 ? Width : (int)((long)Width * Math.Min(done, _total) / _total);
        double rate = elapsed > 0 ? Interlocked.Read(ref _tokens) / elapsed : 0;
        return string.Create(CultureInfo.InvariantCulture,
            $"[{new string('#', filled)}{new string('-', Width - filled)}] {done}/{_total}  ok {Volatile.Read(ref _ok)}  err {Volatile.Read(ref _failed)}  {elapsed:F1} s  {rate:F1} tok/s");
    }

    private async Task RunAsync(TimeSpan interval)
    {
        try
        {
            while (true)
            {
                _output.Write("\r" + Line() + "\u001b[K");
                _output.Flush();
                await Task.Delay(interval, _time, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _output.WriteLine("\r" + Line() + "\u001b[K");
        _output.Flush();
        _stop.Dispose();
    }
}
