using System.Text.RegularExpressions;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;
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

    /// <summary>The tiny synthesized model without a chat template (the page then uses /v1/completions).</summary>
    public static readonly Lazy<string> NoTemplateModel = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-frontend-tests", Guid.NewGuid().ToString("N"), "no-template.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32, ChatTemplate = null });
        return path;
    });

    public static Task<WebUiServer> StartAsync() => StartAsync(FrontendHarness.TinyChatModel.Value, "tiny-chat");

    public static async Task<WebUiServer> StartAsync(string model, string name)
    {
        DynamoProcess run = DynamoProcess.Start(["run", $"out={model}", "--served-model-name", name, "--http-port", "0", "--http-host", "127.0.0.1",
            "--threads", "1", "--kv-cache-memory", "16000000"]);
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
