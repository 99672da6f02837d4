using System.CommandLine;
using Dynamo.Cli.Load;

namespace Dynamo.Cli.Commands;

/// <summary>The workload flags of the load tools (`bench serve`, `bench routing`), with each command's defaults.</summary>
internal sealed class LoadFlags
{
    private readonly Option<string> _workload;
    private readonly Option<int> _concurrency;
    private readonly Option<int> _numPrompts;
    private readonly Option<int?> _inputLen = new("--input-len") { Description = $"Prompt length in tokens, estimated as one per word (default {LoadOptions.DefaultInputLen}); with trace:FILE a cap" };
    private readonly Option<int?> _outputLen = new("--output-len") { Description = $"max_tokens, EOS ignored (default {LoadOptions.DefaultOutputLen}); with trace:FILE a cap" };
    private readonly Option<double> _traceScale = new("--trace-scale") { Description = "Trace time compression: arrivals at timestamp / X (10 = ten times faster)", DefaultValueFactory = _ => LoadOptions.Default.TraceScale };
    private readonly Option<int> _traceBlock;
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the prompt text", DefaultValueFactory = _ => LoadOptions.Default.Seed };

    private LoadFlags(string workload, int concurrency, int numPrompts, int traceBlockTokens)
    {
        _workload = new Option<string>("--workload", "-w") { Description = Workloads.Names, DefaultValueFactory = _ => workload };
        _concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at most", DefaultValueFactory = _ => concurrency };
        _numPrompts = new Option<int>("--num-prompts", "-n") { Description = "Requests to send in all (turns, for multi-turn)", DefaultValueFactory = _ => numPrompts };
        _traceBlock = new Option<int>("--trace-block-tokens") { Description = "Tokens per trace hash-id block; trace lengths scale by N/512", DefaultValueFactory = _ => traceBlockTokens };
    }

    /// <summary>Adds the flags to <paramref name="command"/> with these defaults.</summary>
    public static LoadFlags AddTo(Command command, string workload, int concurrency, int numPrompts, int traceBlockTokens)
    {
        var flags = new LoadFlags(workload, concurrency, numPrompts, traceBlockTokens);
        foreach (Option o in new Option[] { flags._concurrency, flags._numPrompts, flags._inputLen, flags._outputLen, flags._workload, flags._traceScale, flags._traceBlock, flags._seed })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary>The validated load options for <paramref name="url"/> and <paramref name="model"/>.</summary>
    public LoadOptions Read(ParseResult parse, string url, string model)
    {
        var options = new LoadOptions
        {
            Url = url,
            Model = model,
            Concurrency = parse.GetValue(_concurrency),
            NumPrompts = parse.GetValue(_numPrompts),
            InputLen = parse.GetValue(_inputLen),
            OutputLen = parse.GetValue(_outputLen),
            TraceScale = parse.GetValue(_traceScale),
            TraceBlockTokens = parse.GetValue(_traceBlock),
            Seed = parse.GetValue(_seed),
        };
        options.Validate();
        return options;
    }

    /// <summary>The workload named by --workload.</summary>
    public IWorkload Workload(ParseResult parse) => Workloads.Parse(parse.GetValue(_workload)!);
}
