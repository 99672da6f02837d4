using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using YamlDotNet.RepresentationModel;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// A real Prometheus for one test (Debian's <c>prometheus</c> package), on a free loopback port with its data in a
/// temporary folder, scraping with deploy/metrics/prometheus.yml whose targets <see cref="RenderConfig"/> replaced
/// with the test's. Disposing kills it and deletes its files.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    public const string InstallHint = "prometheus is not installed: apt-get install -y prometheus (.ci/run installs it)";

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly string _directory;
    private readonly HttpClient _http;
    private readonly System.Text.StringBuilder _log = new();

    private PrometheusServer(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Port = port;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(10) };
    }

    public int Port { get; }

    /// <summary>What Prometheus logged so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>
    /// The committed prometheus.yml with its targets replaced, job by job (<paramref name="targets"/>: job name to
    /// host:port list, empty for a job with nothing to scrape); every job of the file must be named. Everything
    /// else (intervals, paths, labels) is the file's.
    /// </summary>
    public static string RenderConfig(string committedPath, IReadOnlyDictionary<string, string[]> targets)
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(committedPath))
        {
            yaml.Load(reader);
        }

        var root = (YamlMappingNode)yaml.Documents.Single().RootNode;
        var jobs = (YamlSequenceNode)root.Children[new YamlScalarNode("scrape_configs")];
        var seen = new HashSet<string>();
        foreach (YamlMappingNode job in jobs.Children.Cast<YamlMappingNode>())
        {
            string name = job.Children[new YamlScalarNode("job_name")].ToString();
            Assert.True(targets.TryGetValue(name, out string[]? hosts), $"{committedPath}: job '{name}' has no targets in this test");
            seen.Add(name);
            var statics = (YamlSequenceNode)job.Children[new YamlScalarNode("static_configs")];
            for (int i = 0; i < statics.Children.Count; i++)
            {
                var config = (YamlMappingNode)statics.Children[i];
                config.Children[new YamlScalarNode("targets")] = new YamlSequenceNode(i == 0 ? hosts.Select(h => new YamlScalarNode(h)) : []);
            }
        }

        Assert.Empty(targets.Keys.Except(seen));
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        yaml.Save(writer, assignAnchors: false);
        return writer.ToString();
    }

    /// <summary>
    /// Starts Prometheus with <paramref name="config"/> (a function of its own address, for its self-scrape job) and
    /// waits (bounded) until it is ready. Fails with <see cref="InstallHint"/> when it is not installed.
    /// </summary>
    public static async Task<PrometheusServer> StartAsync(Func<string, string> config)
    {
        string binary = FindBinary() ?? throw new InvalidOperationException(InstallHint);
        int port = LoopbackServers.FreePort();
        string directory = Path.Combine(Path.GetTempPath(), $"dynamo-prometheus-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        string configPath = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(configPath, config($"127.0.0.1:{port}"));
        var start = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[]
        {
            $"--config.file={configPath}", $"--storage.tsdb.path={Path.Combine(directory, "data")}",
            $"--web.listen-address=127.0.0.1:{port}",
        })
        {
            start.ArgumentList.Add(a);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"{binary} did not start");
        var server = new PrometheusServer(process, directory, port);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var clock = Stopwatch.StartNew();
            while (!await server.IsReadyAsync())
            {
                Assert.False(process.HasExited, $"prometheus exited ({(process.HasExited ? process.ExitCode : 0)}):\n{server.Log}\nconfig:\n{await File.ReadAllTextAsync(configPath)}");
                Assert.True(clock.Elapsed < ReadyTimeout, $"prometheus not ready after {ReadyTimeout.TotalSeconds} s:\n{server.Log}");
                await Task.Delay(50);
            }
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>The result of an instant query: each series' labels and value.</summary>
    public async Task<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>> QueryAsync(string promql)
    {
        using HttpResponseMessage response = await _http.GetAsync($"api/v1/query?query={Uri.EscapeDataString(promql)}");
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"query '{promql}': HTTP {(int)response.StatusCode} {body}");
        using JsonDocument doc = JsonDocument.Parse(body);
        JsonElement data = doc.RootElement.GetProperty("data");
        Assert.Equal("vector", data.GetProperty("resultType").GetString());
        return [.. data.GetProperty("result").EnumerateArray().Select(r => (
            r.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!),
            double.Parse(r.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture)))];
    }

    /// <summary>Queries <paramref name="promql"/> until <paramref name="accept"/> takes its result (bounded); returns it.</summary>
    public async Task<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>> WaitForQueryAsync(
        string promql, Func<IReadOnlyList<(Dictionary<string, string> Labels, double Value)>, bool> accept, string what, double seconds = 90)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var result = await QueryAsync(promql);
            if (accept(result))
            {
                return result;
            }

            Assert.True(DateTime.UtcNow < until,
                $"{what}: '{promql}' still gives [{string.Join("; ", result.Select(r => $"{{{string.Join(',', r.Labels.Select(l => $"{l.Key}={l.Value}"))}}} {r.Value}"))}] after {seconds} s\n{Log}");
            await Task.Delay(200);
        }
    }

    /// <summary>Waits until every target of <paramref name="job"/> has been scraped and is up.</summary>
    public Task WaitForTargetsUpAsync(string job, int count) =>
        WaitForQueryAsync($"up{{job=\"{job}\"}}", r => r.Count == count && r.All(s => s.Value == 1), $"{count} targets of {job} up");

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        _process.Dispose();
        _http.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    private async Task<bool> IsReadyAsync()
    {
        try
        {
            using HttpResponseMessage response = await _http.GetAsync("-/ready");
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private static string? FindBinary() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/sbin", "/usr/local/bin"]).Select(d => Path.Combine(d, "prometheus")).FirstOrDefault(File.Exists);
}
