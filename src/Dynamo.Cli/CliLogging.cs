using Microsoft.Extensions.Logging;

namespace Dynamo.Cli;

/// <summary>The serving commands' logs: one line per message on stderr, plain or JSON (--json-logs).</summary>
internal static class CliLogging
{
    /// <summary>Logs of <paramref name="minimum"/> and above (Information by default; `run in=text` keeps only warnings, so the chat stays clean).</summary>
    public static ILoggerFactory Create(bool json, LogLevel minimum = LogLevel.Information) => LoggerFactory.Create(builder =>
    {
        builder.SetMinimumLevel(minimum);
        builder.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        if (json)
        {
            builder.AddJsonConsole(o =>
            {
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.UseUtcTimestamp = true;
            });
        }
        else
        {
            builder.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }

        builder.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    });
}
