using Microsoft.Extensions.Logging;

namespace Dynamo.Cli;

/// <summary>The serving commands' logs: one line per message on stderr, plain or JSON (--json-logs).</summary>
internal static class CliLogging
{
    public static ILoggerFactory Create(bool json) => LoggerFactory.Create(builder =>
    {
        builder.SetMinimumLevel(LogLevel.Information);
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
