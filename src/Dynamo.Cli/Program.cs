using System.CommandLine;
using Dynamo.Cli.Commands;

namespace Dynamo.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("Dynamo.NET: distributed LLM inference serving with a built-in C# engine");
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ModelCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(WorkerCommand.Create());
        root.Subcommands.Add(CallCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        root.Subcommands.Add(FrontendCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(RouterCommand.Create());
        // Our own handler (CliErrors) turns user errors into one line; the default one would print stack traces.
        return CliErrors.Run(() => root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
    }
}
