using System.CommandLine;

namespace Dynamo.Cli.Commands;

/// <summary><c>dynamo model ...</c>: model file tools (synth).</summary>
internal static class ModelCommand
{
    public static Command Create()
    {
        var model = new Command("model", "Model file tools");
        return model;
    }
}
