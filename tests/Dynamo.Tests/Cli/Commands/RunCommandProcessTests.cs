using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>
/// `dynamo run` as a process, as a new user meets it: the line saying it is ready (and that it is), the curl
/// line it suggests (which must work for the model served), where its log says it listens, and a terminal
/// chat with no log line inside the conversation.
/// </summary>
public class RunCommandProcessTests
{
    [Fact]
    public async Task Run_ReadyLine_ItsUrlAnswersAtOnceAndItsCurlLineWorks()
    {
        await using DynamoProcess run = DynamoProcess.Start(["run", "out=echo", "--served-model-name", "echo-model", "--http-port", "0", "--http-host", "127.0.0.1"]);

        await run.WaitForLineAsync("run: ready: ");
        Match ready = Regex.Match(run.Output, @"run: ready: (http://127\.0\.0\.1:\d+/) accepts requests\. Try: (curl .*)");
        Assert.True(ready.Success, run.Output);
        using var http = new HttpClient { BaseAddress = new Uri(ready.Groups[1].Value) };
        Assert.Contains("echo-model", await http.GetStringAsync("v1/models"), StringComparison.Ordinal);
        var (status, body) = await CurlAsync(ready.Groups[2].Value);
        Assert.Equal(200, status);
        Assert.Equal("chat.completion", JsonDocument.Parse(body).RootElement.GetProperty("object").GetString());
    }

    [Fact]
    public async Task Run_ModelWithoutChatTemplate_SuggestsACompletionThatAnswers200()
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-run-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string model = Path.Combine(dir, "no-template.gguf");
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = model, Type = GgmlType.F32, ChatTemplate = null });
        await using DynamoProcess run = DynamoProcess.Start(["run", $"out={model}", "--http-port", "0", "--http-host", "127.0.0.1", "--threads", "1", "--kv-cache-memory", "16000000"]);

        await run.WaitForLineAsync("run: ready: ", 120);
        Match ready = Regex.Match(run.Output, @"run: ready: (http://127\.0\.0\.1:\d+/) accepts requests\. Try: (curl \S+v1/completions .*'\{.*\}') \(the model has no chat template");
        Assert.True(ready.Success, run.Output);
        var (status, body) = await CurlAsync(ready.Groups[2].Value);
        Assert.Equal(200, status);
        Assert.Equal("text_completion", JsonDocument.Parse(body).RootElement.GetProperty("object").GetString());
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData("0.0.0.0", @"Frontend listening on http://0\.0\.0\.0:(\d+) \(every interface; from this host http://127\.0\.0\.1:\1/\)")]
    [InlineData("127.0.0.1", @"Frontend listening on http://127\.0\.0\.1:(\d+) \(this host only\)")]
    public async Task Run_EachBind_LogNamesTheAddressItReallyListensOn(string host, string logLine)
    {
        await using DynamoProcess run = DynamoProcess.Start(["run", "out=echo", "--http-port", "0", "--http-host", host]);

        await run.WaitForLineAsync("run: ready: ");
        Match line = Regex.Match(run.Output, logLine);
        Assert.True(line.Success, run.Output);
        string port = line.Groups[1].Value;
        Assert.Contains($"run: ready: http://127.0.0.1:{port}/ accepts requests", run.Output, StringComparison.Ordinal);
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{port}/live")).StatusCode);
        if (host == "0.0.0.0" && OtherAddress() is IPAddress other)
        {
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://{other}:{port}/live")).StatusCode);
        }
    }

    [Fact]
    public async Task RunText_Chat_StdoutHoldsOnlyTheConversationAndNoRequestIsLogged()
    {
        await using DynamoProcess run = DynamoProcess.Start(["run", "in=text", "out=echo", "--max-tokens", "8"], input: true);
        await run.WaitForLineAsync("run: chatting with");

        await run.Input.WriteLineAsync("Hello there");
        await run.Input.FlushAsync();
        await run.WaitForStdoutAsync("\n");
        await run.Input.WriteLineAsync("How are you");
        await run.Input.FlushAsync();
        await run.WaitForStdoutAsync("\n> ");
        await run.Input.WriteLineAsync("");
        await run.Input.FlushAsync();

        Assert.Equal(0, await run.WaitForExitAsync());
        // Once the chat starts, nothing but the conversation is written: no stderr line comes between its lines.
        string output = run.Output;
        int chat = output.IndexOf('\n', output.IndexOf("run: chatting with", StringComparison.Ordinal)) + 1;
        Assert.Equal(run.Stdout, output[chat..]);
        Assert.StartsWith("> ", run.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("info:", run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Dynamo.Frontend", run.Output, StringComparison.Ordinal);
        Assert.Contains("run: in=text logs only warnings and errors", run.Output, StringComparison.Ordinal);
    }

    /// <summary>Runs the curl line as a shell would, adding only the status; returns the status and the body.</summary>
    private static async Task<(int Status, string Body)> CurlAsync(string command)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"{command} -sS -w '\\n%{{http_code}}'");
        using Process curl = Process.Start(start) ?? throw new InvalidOperationException("bash did not start");
        Task<string> stdout = curl.StandardOutput.ReadToEndAsync();
        string stderr = await curl.StandardError.ReadToEndAsync();
        await curl.WaitForExitAsync();
        Assert.True(curl.ExitCode == 0, $"{command}: {stderr}");
        string output = await stdout;
        int cut = output.LastIndexOf('\n');
        return (int.Parse(output[(cut + 1)..], System.Globalization.CultureInfo.InvariantCulture), output[..cut]);
    }

    /// <summary>An IPv4 address of this host other than loopback, if it has one.</summary>
    private static IPAddress? OtherAddress() => NetworkInterface.GetAllNetworkInterfaces()
        .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
        .SelectMany(n => n.GetIPProperties().UnicastAddresses)
        .Select(a => a.Address)
        .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
}
