using System.CommandLine;
using Dynamo.Cli.Commands;

namespace Dynamo.Cli;

internal static class Program
{
    // Our own handler (CliErrors) turns user errors into one line; the default one would print stack traces.
    // System.CommandLine's own Ctrl-C / SIGTERM handling is off (no ProcessTerminationTimeout): the serving
    // commands install RuntimeConnection.ShutdownSignal, which lets them leave discovery and drain however long
    // that takes and then exit 0; every other command ends at once on Ctrl-C, as any process does.
    private static readonly InvocationConfiguration s_invocation = new() { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };

    private static Task<int> Main(string[] args) => InvokeAsync(args);

    /// <summary>Parses and runs a command line as <c>dynamo</c> does: the exit code, user errors as one line on stderr.</summary>
    internal static Task<int> InvokeAsync(string[] args, CancellationToken cancellationToken = default) =>
        CliErrors.RunAsync(() => CreateRoot().Parse(args).InvokeAsync(s_invocation, cancellationToken));

    internal static RootCommand CreateRoot()
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
        root.Subcommands.Add(DisaggCommand.Create());
        root.Subcommands.Add(TopCommand.Create());
        root.Subcommands.Add(SimulateCommand.Create());
        root.Subcommands.Add(PlanCommand.Create());
        return root;
    }
}
