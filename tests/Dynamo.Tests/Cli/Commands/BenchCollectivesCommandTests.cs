using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>
/// <c>dynamo bench collectives</c> at a tiny size: real rank processes (one per rank, as a tensor-parallel worker runs
/// them) over TCP loopback and shared memory, each checking its results against the rank-order sum; and a rank process
/// killed while the others are in their all-reduces.
/// </summary>
public sealed class BenchCollectivesCommandTests
{
    [Fact]
    public void BenchCollectives_ThreeRankProcesses_EveryTransportAndSizeHasARow()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "collectives", "--ranks", "3", "--sizes", "4B,3KB", "--iterations", "5", "--json"], TimeSpan.FromMinutes(4));

        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(3, doc.RootElement.GetProperty("ranks").GetInt32());
        JsonElement[] rows = [.. doc.RootElement.GetProperty("results").EnumerateArray()];
        Assert.Equal(["tcp/4", "tcp/3072", "shm/4", "shm/3072"], rows.Select(row => $"{row.GetProperty("transport").GetString()}/{row.GetProperty("size_bytes").GetInt64()}"));
        Assert.All(rows, row => Assert.True(row.GetProperty("median_us").GetDouble() > 0));
    }

    [Theory]
    [InlineData("--transport", "udp", "--transport: 'udp' is not one of tcp, shm, both")]
    [InlineData("--sizes", "6B", "--sizes: '6B' is not a size from 4 bytes to 1GB that is a multiple of 4 bytes (e.g. 64KB, 16MB)")]
    [InlineData("--ranks", "1", "--ranks must be at least 2, --iterations at least 1")]
    public void BenchCollectives_BadFlag_OneLineNamingIt(string flag, string value, string message)
    {
        CliProcess.Result r = CliProcess.Run(["bench", "collectives", flag, value]);

        Assert.Equal(1, r.ExitCode);
        Assert.Equal([$"error: {message}"], r.StderrLines);
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task RankProcess_AnotherRankIsKilled_ItFailsNamingThatRank(string transport)
    {
        string address = Dynamo.Tests.Components.Parallel.CollectiveRanks.FreeAddress();
        string[] Args(int rank) => ["bench", "collectives", "--ranks", "2", "--transport", transport, "--sizes", "3KB", "--iterations", "100000000", "--rank", $"{rank}", "--dist-init-addr", address];
        await using DynamoProcess rank0 = DynamoProcess.Start(Args(0));
        await using DynamoProcess rank1 = DynamoProcess.Start(Args(1));
        await rank0.WaitForLineAsync("joined: rank 0 of 2", seconds: 120);
        await rank1.WaitForLineAsync("joined: rank 1 of 2", seconds: 120);

        rank1.Kill();

        Assert.Equal(1, await rank0.WaitForExitAsync(seconds: 60));
        Assert.Contains("error: rank 0: rank 1 is gone", rank0.Output, StringComparison.Ordinal);
    }
}
