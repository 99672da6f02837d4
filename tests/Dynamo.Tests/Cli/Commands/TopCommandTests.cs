using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>
/// `dynamo top` against a real `dynamo run` (the mocker engine, in process): its one-table output (--once), the
/// live view in a real terminal (tmux, read back with capture-pane), and the one-line error for a dead address. In the
/// timing collection: top gives up on a /metrics that takes longer than its HTTP bound, and in a full parallel run its
/// terminal test once lost the pane's command within 90 s.
/// </summary>
[Collection(TimingCollection.Name)]
public class TopCommandTests
{
    private static readonly Regex ReadyLine = new(@"run: ready: (http://127\.0\.0\.1:\d+/)");

    [Fact]
    public async Task TopOnce_RunWithRoutedRequests_PrintsTheWorkerRowAndTheFrontendLines()
    {
        await using DynamoProcess run = DynamoProcess.Start(["run", "out=mocker", "--served-model-name", "top-model", "--http-port", "0", "--http-host", "127.0.0.1"]);
        string url = await ReadyUrlAsync(run);
        await SendRequestsAsync(url, 2);

        CliProcess.Result top = CliProcess.Run(["top", "--url", url, "--once", "--interval", "0.2"]);

        Assert.True(top.ExitCode == 0, top.Stderr);
        Assert.Matches(new Regex(@"^\s+[0-9a-f]+\s+backend\s+top-model\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+%\s+[\d.-]+\s+2\s+100%\s*$", RegexOptions.Multiline), top.Stdout);
        Assert.Matches(new Regex(@"^frontend\s+req/s [\d.]+\s+tok/s [\d.]+\s+inflight \d+", RegexOptions.Multiline), top.Stdout);
        Assert.Matches(new Regex(@"^router\s+routed/s [\d.]+", RegexOptions.Multiline), top.Stdout);
    }

    [Fact]
    public void Top_UrlThatDoesNotAnswer_OneLineErrorAndExitCode1()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        CliProcess.Result top = CliProcess.Run(["top", "--url", $"http://127.0.0.1:{port}", "--once"]);

        Assert.Equal(1, top.ExitCode);
        Assert.Equal($"error: --url: http://127.0.0.1:{port}/metrics does not answer (Connection refused (127.0.0.1:{port}))", Assert.Single(top.StderrLines));
        Assert.Empty(top.Stdout);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task Top_InATerminal_TheWorkerRowAppearsAndFollowsTheRequestsInPlace()
    {
        await using DynamoProcess run = DynamoProcess.Start(["run", "out=mocker", "--served-model-name", "top-model", "--http-port", "0", "--http-host", "127.0.0.1"]);
        string url = await ReadyUrlAsync(run);
        await using var tmux = await Tmux.StartAsync($"dotnet {CliProcess.DllPath} top --url {url} --interval 0.3");

        var routedZero = new Regex(@"^\s+[0-9a-f]+\s+backend\s+top-model\s+0\s+0\s+[\d.]+\s+[\d.]+%\s+[\d.]+\s+0\s+-\s*$", RegexOptions.Multiline);
        string first = await tmux.WaitForPaneAsync(routedZero.IsMatch);
        Assert.Contains($"dynamo top  {url}", first, StringComparison.Ordinal);

        await SendRequestsAsync(url, 3);

        var routedThree = new Regex(@"^\s+[0-9a-f]+\s+backend\s+top-model\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+%\s+[\d.]+\s+3\s+100%\s*$", RegexOptions.Multiline);
        string later = await tmux.WaitForPaneAsync(routedThree.IsMatch);
        Assert.Single(Regex.Matches(later, "dynamo top  "));
        Assert.Single(Regex.Matches(later, "top-model"));
    }

    private static async Task<string> ReadyUrlAsync(DynamoProcess run)
    {
        await run.WaitForLineAsync("run: ready: ", 120);
        Match ready = ReadyLine.Match(run.Output);
        Assert.True(ready.Success, run.Output);
        return ready.Groups[1].Value;
    }

    private static async Task SendRequestsAsync(string url, int count)
    {
        using var http = new HttpClient { BaseAddress = new Uri(url) };
        for (int i = 0; i < count; i++)
        {
            using var body = new StringContent("""{"model":"top-model","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}""", Encoding.UTF8, "application/json");
            using HttpResponseMessage response = await http.PostAsync("v1/chat/completions", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    /// <summary>A command in a detached tmux session on a server of its own (160 x 40), read back with capture-pane; disposing kills that server.</summary>
    private sealed class Tmux : IAsyncDisposable
    {
        private readonly string _socket = "dynamo-top-" + Guid.NewGuid().ToString("N");

        public static async Task<Tmux> StartAsync(string command)
        {
            var tmux = new Tmux();
            // The pane outlives the command, so that if it ends its last screen and exit code stay there to be read.
            string kept = $"{command}; echo \"[exited with $?]\"; exec sleep 3600";
            (int code, string output) = await tmux.RunAsync("new-session", "-d", "-x", "160", "-y", "40", kept);
            Assert.True(code == 0, $"tmux new-session failed ({code}): {output}");
            return tmux;
        }

        /// <summary>Captures the pane until <paramref name="condition"/> holds, at most <paramref name="seconds"/>; fails with the last capture.</summary>
        public async Task<string> WaitForPaneAsync(Func<string, bool> condition, double seconds = 90)
        {
            var until = DateTime.UtcNow.AddSeconds(seconds);
            string pane = "";
            while (DateTime.UtcNow < until)
            {
                (_, pane) = await RunAsync("capture-pane", "-p");
                if (condition(pane))
                {
                    return pane;
                }

                Assert.False(pane.Contains("[exited with ", StringComparison.Ordinal), $"the command in the pane ended:\n{pane}");

                await Task.Delay(100);
            }

            Assert.Fail($"the pane did not show what was expected within {seconds} s; it shows:\n{pane}");
            return pane;
        }

        public async ValueTask DisposeAsync() => await RunAsync("kill-server");

        private async Task<(int Code, string Output)> RunAsync(params string[] args)
        {
            var start = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in (string[])["-L", _socket, .. args])
            {
                start.ArgumentList.Add(a);
            }

            Process process;
            try
            {
                process = Process.Start(start)!;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                throw new InvalidOperationException("tmux is not installed: apt-get install -y tmux");
            }

            using (process)
            {
                Task<string> stdout = process.StandardOutput.ReadToEndAsync();
                Task<string> stderr = process.StandardError.ReadToEndAsync();
                await process.WaitForExitAsync();
                return (process.ExitCode, await stdout + await stderr);
            }
        }
    }
}
