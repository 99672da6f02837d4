using System.CommandLine;
using Dynamo.Load;
using Dynamo.Load.Workloads;

namespace Dynamo.Cli.Commands;

/// <summary>The workload flags of the load tools (`bench serve`, `bench routing`), with each command's defaults.</summary>
internal sealed class LoadFlags
{
    private readonly Option<string> _workload;
    private readonly Option<int> _concurrency;
    private readonly Option<int> _numPrompts;
    private readonly Option<int?> _inputLen;
    private readonly Option<int?> _outputLen;
    private readonly Option<double> _traceScale = new("--trace-scale", "--time-scale") { Description = "Trace time compression: arrivals at timestamp / X (10 = ten times faster)", DefaultValueFactory = _ => LoadOptions.Default.TraceScale };
    private readonly Option<int> _traceBlock;
    private readonly int? _defaultInputLen;
    private readonly int? _defaultOutputLen;
    private readonly Option<double> _requestRate;
    private readonly Option<int> _prefixGroups = new("--prefix-groups") { Description = "shared-prefix: distinct system prompts", DefaultValueFactory = _ => LoadOptions.Default.PrefixGroups };
    private readonly Option<double> _prefixZipf = new("--prefix-zipf") { Description = "shared-prefix: group k is drawn with weight 1/k^X (0 = uniform)", DefaultValueFactory = _ => LoadOptions.Default.PrefixZipf };
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the prompt text", DefaultValueFactory = _ => LoadOptions.Default.Seed };

    private LoadFlags(string workload, int concurrency, int numPrompts, int traceBlockTokens, int? inputLen, int? outputLen, double requestRate)
    {
        _inputLen = new Option<int?>("--input-len") { Description = $"Prompt length in words, about one token each for Llama-family tokenizers (default {inputLen ?? LoadOptions.DefaultInputLen}); with a trace a cap (none by default)" };
        _outputLen = new Option<int?>("--output-len") { Description = $"max_tokens, EOS ignored (default {outputLen ?? LoadOptions.DefaultOutputLen}); with a trace a cap (none by default)" };
        _requestRate = new Option<double>("--request-rate") { Description = "Conversations started per second, Poisson arrivals (0 = as fast as --concurrency allows); not with a trace", DefaultValueFactory = _ => requestRate };
        _defaultInputLen = inputLen;
        _defaultOutputLen = outputLen;
        _workload = new Option<string>("--workload", "-w") { Description = WorkloadParser.Names, DefaultValueFactory = _ => workload };
        _concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at most", DefaultValueFactory = _ => concurrency };
        _numPrompts = new Option<int>("--num-prompts", "-n") { Description = "Requests to send in all (turns, for multi-turn)", DefaultValueFactory = _ => numPrompts };
        _traceBlock = new Option<int>("--trace-block-tokens") { Description = "Tokens per trace hash-id block; trace lengths scale by N/512", DefaultValueFactory = _ => traceBlockTokens };
    }

    /// <summary>Adds the flags to <paramref name="command"/> with these defaults.</summary>
    public static LoadFlags AddTo(Command command, string workload, int concurrency, int numPrompts, int traceBlockTokens, int? inputLen = null, int? outputLen = null, double requestRate = 0)
    {
        var flags = new LoadFlags(workload, concurrency, numPrompts, traceBlockTokens, inputLen, outputLen, requestRate);
        foreach (Option o in new Option[] { flags._concurrency, flags._numPrompts, flags._inputLen, flags._outputLen, flags._workload, flags._requestRate, flags._traceScale, flags._traceBlock, flags._prefixGroups, flags._prefixZipf, flags._seed })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary>--seed (the simulator seeds its routers with it too).</summary>
    public Option<int> SeedOption => _seed;

    /// <summary>Whether --num-prompts was given (a simulation replays a whole trace otherwise).</summary>
    public bool NumPromptsGiven(ParseResult parse) => parse.GetResult(_numPrompts) is { Implicit: false };

    /// <summary>Whether --concurrency was given (a simulation sends every trace request at its arrival otherwise).</summary>
    public bool ConcurrencyGiven(ParseResult parse) => parse.GetResult(_concurrency) is { Implicit: false };

    /// <summary>--workload.</summary>
    public Option<string> WorkloadOption => _workload;

    /// <summary>The validated load options for <paramref name="url"/> and <paramref name="model"/> (of <paramref name="workload"/> instead of --workload when given).</summary>
    public LoadOptions Read(ParseResult parse, string url, string model, string? workload = null)
    {
        string name = workload ?? parse.GetValue(_workload)!;
        bool trace = name.StartsWith(TraceWorkload.WorkloadPrefix, StringComparison.Ordinal) || name.StartsWith(TraceWorkload.TokenWorkloadPrefix, StringComparison.Ordinal);
        var options = new LoadOptions
        {
            Url = url,
            Model = model,
            Concurrency = parse.GetValue(_concurrency),
            NumPrompts = parse.GetValue(_numPrompts),
            InputLen = parse.GetValue(_inputLen) ?? (trace ? null : _defaultInputLen),
            OutputLen = parse.GetValue(_outputLen) ?? (trace ? null : _defaultOutputLen),
            RequestRate = trace ? 0 : parse.GetValue(_requestRate),
            TraceScale = parse.GetValue(_traceScale),
            TraceBlockTokens = parse.GetValue(_traceBlock),
            PrefixGroups = parse.GetValue(_prefixGroups),
            PrefixZipf = parse.GetValue(_prefixZipf),
            Seed = parse.GetValue(_seed),
        };
        options.Validate();
        return options;
    }

    /// <summary>The workload named by --workload (or <paramref name="name"/>), with Poisson arrivals when --request-rate is given.</summary>
    public IWorkload Workload(ParseResult parse, string? name = null)
    {
        IWorkload workload = WorkloadParser.Parse(name ?? parse.GetValue(_workload)!);
        double rate = parse.GetValue(_requestRate);
        if (rate <= 0)
        {
            return workload;
        }

        if (workload is TraceWorkload)
        {
            // A trace has its own arrival times (--trace-scale); an explicit --request-rate with it is an error.
            return parse.GetResult(_requestRate) is { Implicit: false }
                ? throw new CliUsageException("--request-rate: a trace has its own arrival times (use --trace-scale)")
                : workload;
        }

        return new PoissonArrivals(workload, rate);
    }
}
