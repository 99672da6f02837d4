namespace Dynamo.Cli;

/// <summary>A bad command line that the parser itself could not catch (a value out of range, a missing file).</summary>
internal sealed class CliUsageException(string message) : Exception(message);
