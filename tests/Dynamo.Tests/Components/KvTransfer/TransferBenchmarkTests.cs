using System.Text.Json;
using Dynamo.Load.Benchmarks;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Components.KvTransfer;

/// <summary><c>dynamo bench transfer</c>: its sizes flag and one small run of the real command.</summary>
public sealed class TransferBenchmarkTests
{
    [Fact]
    public void ParseSizes_UnitsAreBinary()
    {
        Assert.Equal([1L << 20, 16L << 20, 64L << 10, 4096, 8, 1L << 30], TransferBenchmark.ParseSizes("1MB, 16mb,64KB,4096B,8,1GB"));
        Assert.Equal("64KB", TransferBenchmark.FormatSize(64 << 10));
        Assert.Equal("24B", TransferBenchmark.FormatSize(24));
    }

    [Theory]
    [InlineData("1.5MB")]
    [InlineData("12B")]
    [InlineData("0")]
    [InlineData("2GB")]
    [InlineData(",")]
    public void ParseSizes_Bad_ArgumentExceptionNamingTheFlag(string sizes)
    {
        Assert.StartsWith("--sizes: ", Assert.Throws<ArgumentException>(() => TransferBenchmark.ParseSizes(sizes)).Message);
    }

    [Fact]
    public void BenchTransfer_Json_EverySizeWithItsFigures()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "transfer", "--sizes", "64KB,1MB", "--repetitions", "2", "--json"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("repetitions").GetInt32());
        Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("cpu").GetString()));
        JsonElement[] rows = [.. doc.RootElement.GetProperty("results").EnumerateArray()];
        Assert.Equal([65536L, 1L << 20], rows.Select(e => e.GetProperty("size_bytes").GetInt64()));
        foreach (JsonElement row in rows)
        {
            foreach (string figure in new[] { "memcpy_gbps", "tcp_gbps", "transfer_gbps", "transfer_vs_tcp", "pooled_gbps", "pooled_vs_tcp", "tcp_ms", "transfer_ms", "pooled_ms" })
            {
                Assert.True(row.GetProperty(figure).GetDouble() > 0, figure);
            }
        }

        Assert.Contains("bench transfer: 1MB x 2...", r.Stderr);
    }

    [Fact]
    public void BenchTransfer_BadSizes_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "transfer", "--sizes", "12B"]);

        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: --sizes: '12B' is not a size from 8 bytes to 1GB that is a multiple of 8 bytes (e.g. 64KB, 16MB)", Assert.Single(r.StderrLines));
    }
}
