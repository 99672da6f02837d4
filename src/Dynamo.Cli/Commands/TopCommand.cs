using System.CommandLine;
using Dynamo.Cli.Top;
using Spectre.Console;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo top --url http://HOST:8000 [--interval SECONDS] [--once]</c>: a live view of a deployment from its
/// frontend's <c>/metrics</c> (<see cref="TopCommandRunner"/>).
/// </summary>
internal static class TopCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url") { Description = "The frontend's address; its /metrics is read", DefaultValueFactory = _ => TopOptions.Default.Url.ToString() };
        var interval = new Option<double>("--interval") { Description = "Seconds between reads (rates are over this interval)", DefaultValueFactory = _ => TopOptions.Default.IntervalSeconds };
        var once = new Option<bool>("--once") { Description = "Read twice, --interval apart, print one table and exit (for scripts)" };
        var command = new Command("top", "A live view of a deployment from its frontend's /metrics: one row per worker, the frontend's and router's rates and queues")
        {
            url, interval, once,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            string text = parse.GetValue(url)!;
            if (!Uri.TryCreate(text.EndsWith('/') ? text : text + "/", UriKind.Absolute, out Uri? address))
            {
                throw new CliUsageException($"--url {text}: not an http:// or https:// address");
            }

            TopOptions options = TopOptions.Default with { Url = address, IntervalSeconds = parse.GetValue(interval), Once = parse.GetValue(once) };
            return TopCommandRunner.RunAsync(options, CreateConsole(), cancellationToken);
        });
        return command;
    }

    /// <summary>The terminal; when stdout is redirected (a script, a file), plain text at least 160 columns wide so that a row stays on one line.</summary>
    private static IAnsiConsole CreateConsole()
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected)
        {
            console.Profile.Width = Math.Max(console.Profile.Width, 160);
        }

        return console;
    }
}
