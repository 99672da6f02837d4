using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Dynamo.Tests.Infrastructure;

/// <summary>An ILogger that writes to the test's output and keeps every entry for assertions.</summary>
public sealed class TestOutputLogger(ITestOutputHelper output, string name) : ILogger
{
    private readonly List<(EventId Id, LogLevel Level, string Message)> _entries = [];

    public IReadOnlyList<(EventId Id, LogLevel Level, string Message)> Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        string message = formatter(state, exception);
        lock (_entries)
        {
            _entries.Add((eventId, logLevel, message));
        }

        try
        {
            output.WriteLine($"[{DateTime.Now:HH:mm:ss.fff}] {name} {logLevel} {eventId.Id}: {message}");
        }
        catch (InvalidOperationException)
        {
            // The test has finished; a background loop logged late.
        }
    }
}
