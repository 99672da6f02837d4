using Dynamo.Llm.Models;

namespace Dynamo.Cli;

/// <summary>Turns the errors a user can cause into one line on stderr and a non-zero exit code.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception ex) when (IsUserError(ex))
        {
            // ArgumentException appends " (Parameter 'name')", which means nothing to a CLI user.
            string message = ex is ArgumentException { ParamName: string name }
                ? ex.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : ex.Message;
            Console.Error.WriteLine($"error: {OneLine(message)}");
            return 1;
        }
    }

    public static bool IsUserError(Exception ex) =>
        ex is ModelFormatException or CliUsageException or FileNotFoundException or DirectoryNotFoundException
            or UnauthorizedAccessException or InvalidDataException or NotSupportedException or EndOfStreamException
            or ArgumentException or IOException;

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}

/// <summary>A bad command line that the parser itself could not catch (a value out of range, a missing file).</summary>
internal sealed class CliUsageException(string message) : Exception(message);
