using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Frontend.WebUi;

/// <summary>`dynamo run` as a process serving the tiny synthesized chat model (a real engine) on a free port.</summary>
internal sealed class WebUiServer : IAsyncDisposable
{
    private WebUiServer(DynamoProcess process, Uri address)
    {
        Process = process;
        Address = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(120) };
    }

    public DynamoProcess Process { get; }

    public Uri Address { get; }

    public HttpClient Http { get; }

    public static async Task<WebUiServer> StartAsync(params string[] extra)
    {
        DynamoProcess run = DynamoProcess.Start(["run", $"out={FrontendHarness.TinyChatModel.Value}", "--served-model-name", "tiny-chat", "--http-port", "0", "--http-host", "127.0.0.1",
            "--threads", "1", "--kv-cache-memory", "16000000", .. extra]);
        try
        {
            await run.WaitForLineAsync("run: ready: ", 180);
            Match ready = Regex.Match(run.Output, @"run: ready: (http://127\.0\.0\.1:\d+/)");
            Assert.True(ready.Success, run.Output);
            return new WebUiServer(run, new Uri(ready.Groups[1].Value));
        }
        catch
        {
            await run.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Process.DisposeAsync();
    }
}
