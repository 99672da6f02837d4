using System.CommandLine;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench transfer</c>: the KV transfer plane on loopback against a memory copy and a plain TCP stream of the
/// same sizes (see <see cref="TransferBenchmark"/>).
/// </summary>
internal static class BenchTransferCommand
{
    public static Command Create()
    {
        var sizes = new Option<string>("--sizes") { Description = "Comma-separated payload sizes (KB, MB, GB are binary: 1MB = 1,048,576 bytes)", DefaultValueFactory = _ => "1MB,16MB,64MB" };
        var repetitions = new Option<int>("--repetitions") { Description = "Timed repetitions per size (after one untimed round)", DefaultValueFactory = _ => 10 };
        var socketBuffer = new Option<int>("--socket-buffer") { Description = "Kernel socket buffer size in bytes for both socket kinds; 0 leaves it to the kernel", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("transfer", "KV transfer: GB/s of a memory copy, a plain loopback TCP stream and KvTransferClient -> KvTransferServer, per size")
        {
            sizes, repetitions, socketBuffer, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            IReadOnlyList<long> parsed = TransferBenchmark.ParseSizes(parse.GetValue(sizes)!);
            int reps = parse.GetValue(repetitions), buffer = parse.GetValue(socketBuffer);
            if (reps < 1 || buffer < 0)
            {
                throw new CliUsageException("--repetitions must be at least 1, --socket-buffer at least 0");
            }

            bool asJson = parse.GetValue(json);
            TransferBenchmark.Result result = await TransferBenchmark.RunAsync(parsed, reps, buffer, asJson ? Console.Error : Console.Out, cancellationToken);
            BenchOutput.Write(asJson, result.WriteJson, result.WriteTable);

            return 0;
        });
        return command;
    }
}
