using Dynamo.Cli;

namespace Dynamo.Tests.Cli;

public sealed class CliErrorsTests
{
    [Fact]
    public async Task RunAsync_CancelledWhileStarting_ReturnsTheStoppedCodeInsteadOfThrowing()
    {
        // What a server sees when Ctrl-C or SIGTERM arrives while its host is still starting.
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        int code = await CliErrors.RunAsync(() => Task.FromCanceled<int>(cts.Token));

        Assert.Equal(CliErrors.StoppedExitCode, code);
    }

    [Fact]
    public async Task RunAsync_UserError_ReturnsOneAndOtherFailuresStillThrow()
    {
        Assert.Equal(1, await CliErrors.RunAsync(() => throw new FileNotFoundException("no such model")));
        await Assert.ThrowsAsync<InvalidOperationException>(() => CliErrors.RunAsync(() => throw new InvalidOperationException("a bug")));
    }
}
