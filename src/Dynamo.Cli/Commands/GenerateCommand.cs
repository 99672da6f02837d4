using System.CommandLine;

namespace Dynamo.Cli.Commands;

/// <summary><c>dynamo generate</c>: prints a completion as it streams.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var cmd = new Command("generate", "Generate a completion from a model file");
        return cmd;
    }
}
