using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Dynamo.Tests.Frontend.WebUi;

/// <summary>
/// A headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol: started with
/// --remote-debugging-port=0 in a fresh profile, its port read from DevToolsActivePort, one page's WebSocket.
/// </summary>
internal sealed class HeadlessChromium : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _profile;
    private readonly ClientWebSocket _socket;
    private int _nextId;

    private HeadlessChromium(Process process, string profile, ClientWebSocket socket)
    {
        _process = process;
        _profile = profile;
        _socket = socket;
    }

    public static string Executable()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            string path = Path.Combine(dir, "chromium");
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new InvalidOperationException("chromium is not installed: the web page's browser test needs it (apt-get install chromium chromium-driver; .ci/run installs it)");
    }

    public static async Task<HeadlessChromium> StartAsync(int width, int height)
    {
        string profile = Path.Combine(Path.GetTempPath(), "dynamo-chromium-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        var info = new ProcessStartInfo(Executable())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string arg in new[]
        {
            "--headless=new", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", $"--user-data-dir={profile}", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage",
            $"--window-size={width},{height}", "about:blank",
        })
        {
            info.ArgumentList.Add(arg);
        }

        Process process = Process.Start(info)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            string portFile = Path.Combine(profile, "DevToolsActivePort");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            string[] lines = [];
            while (lines.Length < 1 || !int.TryParse(lines[0], out _))
            {
                if (process.HasExited || DateTime.UtcNow > deadline)
                {
                    lock (output)
                    {
                        throw new InvalidOperationException($"chromium did not open its DevTools port (exited: {process.HasExited}): {output}");
                    }
                }

                await Task.Delay(50);
                lines = File.Exists(portFile) ? await File.ReadAllLinesAsync(portFile) : [];
            }

            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{lines[0]}/") };
            string? url = null;
            while (url is null)
            {
                JsonArray targets = JsonNode.Parse(await http.GetStringAsync("json/list"))!.AsArray();
                url = targets.FirstOrDefault(t => (string?)t!["type"] == "page")?["webSocketDebuggerUrl"]?.GetValue<string>();
                if (url is null)
                {
                    Assert.True(DateTime.UtcNow < deadline, "chromium opened no page target");
                    await Task.Delay(50);
                }
            }

            var socket = new ClientWebSocket();
            await socket.ConnectAsync(new Uri(url), CancellationToken.None);
            var browser = new HeadlessChromium(process, profile, socket);
            await browser.SendAsync("Emulation.setDeviceMetricsOverride", new JsonObject { ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false });
            return browser;
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }
    }

    /// <summary>Sends a CDP command and returns its result (events in between are skipped).</summary>
    public async Task<JsonNode> SendAsync(string method, JsonObject? parameters = null)
    {
        int id = ++_nextId;
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? [] };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, timeout.Token);
        var buffer = new byte[1 << 16];
        while (true)
        {
            using var received = new MemoryStream();
            WebSocketReceiveResult result;
            do
            {
                result = await _socket.ReceiveAsync(buffer, timeout.Token);
                received.Write(buffer, 0, result.Count);
            }
            while (!result.EndOfMessage);

            JsonNode reply = JsonNode.Parse(received.ToArray())!;
            if ((int?)reply["id"] != id)
            {
                continue;
            }

            if (reply["error"] is { } error)
            {
                throw new InvalidOperationException($"{method}: {error.ToJsonString()}");
            }

            return reply["result"]!;
        }
    }

    /// <summary>Evaluates a JS expression in the page and returns its value (as JSON).</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression)
    {
        JsonNode result = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true });
        if (result["exceptionDetails"] is { } exception)
        {
            throw new InvalidOperationException($"{expression}: {exception.ToJsonString()}");
        }

        return result["result"]?["value"];
    }

    /// <summary>Polls <paramref name="expression"/> until it is true, at most <paramref name="seconds"/>; fails naming <paramref name="what"/>.</summary>
    public async Task WaitUntilAsync(string expression, string what, double seconds = 120)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (await EvaluateAsync($"!!({expression})") is not JsonValue v || !v.GetValue<bool>())
        {
            if (DateTime.UtcNow > deadline)
            {
                string body = (await EvaluateAsync("document.body.innerText"))?.ToString() ?? "";
                Assert.Fail($"not within {seconds} s: {what}; the page says: {body}");
            }

            await Task.Delay(50);
        }
    }

    public async Task<byte[]> ScreenshotAsync()
    {
        JsonNode result = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
        return Convert.FromBase64String(result["data"]!.GetValue<string>());
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await SendAsync("Browser.close");
        }
        catch (Exception e) when (e is WebSocketException or InvalidOperationException or OperationCanceledException)
        {
        }

        _socket.Dispose();
        if (!_process.WaitForExit(TimeSpan.FromSeconds(10)))
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_profile, true);
        }
        catch (IOException)
        {
        }
    }
}
