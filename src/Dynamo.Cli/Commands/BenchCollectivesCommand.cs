using System.CommandLine;
using System.Globalization;
using Dynamo.Components.Parallel;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench collectives</c>: the tensor-parallel all-reduce between rank processes on this host, over TCP
/// loopback and shared memory (see <see cref="CollectivesBenchmark"/>). With the hidden <c>--rank</c> and
/// <c>--dist-init-addr</c> it is one of those rank processes.
/// </summary>
internal static class BenchCollectivesCommand
{
    public static Command Create()
    {
        var ranks = new Option<int>("--ranks") { Description = "Rank processes (the tensor-parallel size)", DefaultValueFactory = _ => 2 };
        var transport = new Option<string>("--transport") { Description = "tcp, shm or both", DefaultValueFactory = _ => "both" };
        var sizes = new Option<string>("--sizes") { Description = "Comma-separated message sizes, multiples of 4 bytes (KB, MB are binary)", DefaultValueFactory = _ => CollectivesBenchmark.DefaultSizes };
        var iterations = new Option<int>("--iterations") { Description = "Timed all-reduces per size at most (fewer for large sizes: 256 MB of messages)", DefaultValueFactory = _ => 1000 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var rank = new Option<int?>("--rank") { Description = "Run as this rank (the bench starts its ranks so)", Hidden = true };
        var initAddress = new Option<string?>("--dist-init-addr") { Description = "Rank 0's rendezvous (with --rank)", Hidden = true };
        var command = new Command("collectives", "Tensor-parallel all-reduce between rank processes on this host: latency (median, p99) and bus GB/s per size, TCP loopback and shared memory")
        {
            ranks, transport, sizes, iterations, json, rank, initAddress,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            int n = parse.GetValue(ranks), reps = parse.GetValue(iterations);
            string sizeText = parse.GetValue(sizes)!, transportName = parse.GetValue(transport)!.ToLowerInvariant();
            IReadOnlyList<long> parsed;
            try
            {
                parsed = TransferBenchmark.ParseSizes(sizeText, multiple: sizeof(float));
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException(e.Message);
            }

            string[] transports = transportName switch
            {
                "both" => ["tcp", "shm"],
                "tcp" or "shm" => [transportName],
                _ => throw new CliUsageException($"--transport: '{transportName}' is not one of tcp, shm, both"),
            };
            if (n < 2 || reps < 1)
            {
                throw new CliUsageException("--ranks must be at least 2, --iterations at least 1");
            }

            if (parse.GetValue(rank) is int r)
            {
                if (transports.Length != 1 || parse.GetValue(initAddress) is not { } address)
                {
                    throw new CliUsageException("--rank needs --dist-init-addr and one --transport");
                }

                var member = new CollectiveMember(r, n, address, CollectiveAgreement.FromText(Invariant($"bench collectives {n} ranks, sizes {sizeText}")));
                var options = CollectiveGroupOptions.Default with
                {
                    Transport = CollectiveGroupOptions.ParseTransport(transports[0]),
                    StartTimeout = TimeSpan.FromSeconds(60),
                };
                try
                {
                    await CollectivesBenchmark.RunRankAsync(member.Validate(), options, parsed, reps, Console.Out, cancellationToken);
                }
                catch (ArgumentException e)
                {
                    throw new CliUsageException(e.Message);
                }

                return 0;
            }

            bool asJson = parse.GetValue(json);
            CollectivesBenchmark.Result result = await CollectivesBenchmark.RunAsync(BenchDisaggCommand.SelfCommand(), n, transports, sizeText, reps, BenchOutput.Log(asJson), cancellationToken);
            BenchOutput.Write(asJson, result.WriteJson, result.WriteTable);

            return 0;
        });
        return command;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
