using Dynamo.Llm.ModelFiles;

namespace Dynamo.Cli;

/// <summary>Turns the errors a user can cause into one line on stderr and a non-zero exit code.</summary>
internal static class CliErrors
{
    /// <summary>Runs <paramref name="action"/>; a user error becomes <c>error: MESSAGE</c> on one line of stderr and exit code 1.</summary>
    public static async Task<int> RunAsync(Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception ex) when (IsUserError(ex))
        {
            await Console.Error.WriteLineAsync($"error: {Describe(ex)}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            // Ctrl-C or SIGTERM while a command was still starting (a server loading its model, say): the command's
            // token was cancelled before its own stop handling took over. One line and the shell's interrupt code,
            // not an unhandled exception and an abort.
            await Console.Error.WriteLineAsync("stopped: cancelled before it finished starting");
            return StoppedExitCode;
        }
    }

    /// <summary>Exit code of a command stopped by Ctrl-C or SIGTERM before it finished starting (128 + SIGINT, as a shell reports it).</summary>
    public const int StoppedExitCode = 130;

    public static bool IsUserError(Exception ex) =>
        ex is ModelFormatException or CliUsageException or FileNotFoundException or DirectoryNotFoundException
            or UnauthorizedAccessException or InvalidDataException or NotSupportedException or EndOfStreamException
            or ArgumentException or IOException
            or Llm.Parallel.CollectiveException
            or Runtime.Discovery.DiscoveryUnavailableException or Runtime.RequestPlane.NatsUnavailableException;

    /// <summary>The message on one line; ArgumentException's " (Parameter 'name')" suffix, which means nothing to a CLI user, left out.</summary>
    public static string Describe(Exception ex)
    {
        string message = ex is ArgumentException { ParamName: string name }
            ? ex.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : ex.Message;
        return message.ReplaceLineEndings(" ").Trim();
    }
}
