using System.Globalization;
using System.Text.RegularExpressions;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// A real worker's KV pool: sized from the model by default (context x --max-num-seqs x bytes per token under the
/// memory cap), by --kv-cache-memory when given; the startup line says how many bytes and blocks, of which element
/// type (F16 by default, --kv-cache-dtype f32: twice the bytes a token) and why, and the worker's /metrics reports the
/// same capacity.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class WorkerKvCacheTests
{
    [Theory]
    [InlineData(new string[0], "the model's need, context ", "f16")]
    [InlineData(new[] { "--max-num-seqs", "2" }, " x 2 sequences (--max-num-seqs)", "f16")]
    [InlineData(new[] { "--kv-cache-memory", "16000000" }, ": --kv-cache-memory 16,000,000 bytes", "f16")]
    [InlineData(new[] { "--kv-cache-memory", "16000000", "--kv-cache-dtype", "f32" }, ": --kv-cache-memory 16,000,000 bytes", "f32")]
    public async Task Worker_KvCacheSize_LoggedAtStartupAndOnMetrics(string[] flags, string derivation, string dtype)
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };

        await using DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--threads", "1", "--system-port", "0", .. flags], env);
        await worker.WaitForLineAsync("worker: /metrics, /health and /live on ");

        Match line = KvLine().Match(worker.Output);
        Assert.True(line.Success, worker.Output);
        long bytes = long.Parse(line.Groups["bytes"].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
        int blocks = int.Parse(line.Groups["blocks"].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
        long perBlock = long.Parse(line.Groups["perBlock"].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
        Assert.Equal(blocks * perBlock, bytes);
        Assert.Contains(derivation, line.Value);
        Assert.Equal(dtype, line.Groups["dtype"].Value);
        Assert.Equal(PagedKvCache.BytesPerBlock(ModelLoader.Load(TestModels.Tiny.Value).Config, 16, KvCacheDtypes.Parse(dtype)), perBlock);

        int port = int.Parse(StatusPort().Match(worker.Output).Groups["port"].Value, CultureInfo.InvariantCulture);
        using var http = new HttpClient();
        string metrics = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        Assert.Equal(bytes, Metric(metrics, "dynamo_component_kv_cache_capacity_bytes"));
        Assert.Equal(blocks, Metric(metrics, "dynamo_component_kv_blocks_total"));
    }

    private static double Metric(string text, string name)
    {
        string line = Assert.Single(text.Split('\n'), l => l.StartsWith(name + "{", StringComparison.Ordinal));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"worker: KV cache (?<bytes>[\d,]+) bytes = (?<blocks>[\d,]+) blocks of \d+ tokens \((?<perBlock>[\d,]+) bytes each, keys and values in (?<dtype>f16|f32)\): [^\n]*")]
    private static partial Regex KvLine();

    [GeneratedRegex(@"/live on 127\.0\.0\.1:(?<port>\d+)")]
    private static partial Regex StatusPort();
}
