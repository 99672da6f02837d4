using System.CommandLine;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Serving;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The serving engine's flags (with the guides' vLLM and SGLang spellings as aliases), bound into
/// <see cref="EngineOptions"/> (the defaults are the record's): `worker`, `run` and `bench engine`.
/// </summary>
internal sealed class EngineFlags
{
    private readonly Option<int> _blockSize = new("--block-size", "--page-size") { Description = "Tokens per KV block", DefaultValueFactory = _ => EngineOptions.Default.BlockSize };
    private readonly Option<int> _maxSeqs = new("--max-num-seqs", "--max-running-requests") { Description = "Sequences in the running batch at most", DefaultValueFactory = _ => EngineOptions.Default.MaxNumSeqs };
    private readonly Option<int> _maxTokens = new("--max-num-batched-tokens", "--chunked-prefill-size") { Description = "Tokens one step computes at most", DefaultValueFactory = _ => EngineOptions.Default.MaxNumBatchedTokens };
    private readonly Option<long?> _kvMemory = new("--kv-cache-memory") { Description = "KV cache bytes (default: --mem-fraction-static of available memory)" };
    private readonly Option<double?> _memFraction = new("--mem-fraction-static", "--gpu-memory-utilization") { Description = $"Fraction of available memory for the KV cache (default {EngineOptions.Default.KvCacheMemoryFraction})" };
    private readonly Option<int?> _context = new("--context-length", "--max-model-len") { Description = "Context length (default: the model's)" };
    private readonly Option<double?> _maxStepMs = new("--max-step-ms")
    {
        Description = $"Step-time budget in ms: a step adds prefill and admits requests only while its predicted time (learned from the engine's own steps) stays within it, so running requests get their next token within about that time; at least a small prefill chunk always runs (0: off, every step fills --max-num-batched-tokens; default {EngineOptions.DefaultMaxStepMs} for the built-in engine, off for the mocker)",
    };
    private readonly Option<bool> _noPrefixCaching = new("--no-enable-prefix-caching") { Description = "Turn the prefix cache off" };
    private readonly Option<string?> _kvDtype = KvCacheDtypeOption();

    public static EngineFlags AddTo(Command command)
    {
        var flags = new EngineFlags();
        foreach (Option o in new Option[] { flags._blockSize, flags._maxSeqs, flags._maxTokens, flags._kvMemory, flags._memFraction, flags._context, flags._maxStepMs, flags._noPrefixCaching, flags._kvDtype })
        {
            command.Options.Add(o);
        }

        return flags;
    }

    /// <summary>The flags' values over <see cref="EngineOptions.Default"/> (not validated yet).</summary>
    public EngineOptions Read(ParseResult parse) => EngineOptions.Default with
    {
        BlockSize = parse.GetValue(_blockSize),
        MaxNumSeqs = parse.GetValue(_maxSeqs),
        MaxNumBatchedTokens = parse.GetValue(_maxTokens),
        KvCacheMemory = parse.GetValue(_kvMemory),
        KvCacheMemoryFraction = parse.GetValue(_memFraction) ?? EngineOptions.Default.KvCacheMemoryFraction,
        ContextLength = parse.GetValue(_context),
        MaxStepMs = parse.GetValue(_maxStepMs),
        PrefixCaching = !parse.GetValue(_noPrefixCaching),
        KvCacheDtype = ReadKvCacheDtype(parse, _kvDtype, EngineOptions.Default.KvCacheDtype),
    };

    /// <summary>--kv-cache-dtype f16|f32: the serving engine's, and `generate`'s and `bench forward`'s.</summary>
    public static Option<string?> KvCacheDtypeOption() =>
        new("--kv-cache-dtype") { Description = $"KV cache element type: f16 (half the memory and the bytes each decode step reads) or f32 (default {EngineOptions.Default.KvCacheDtype.Name()})" };

    /// <summary>The flag's element type, <paramref name="fallback"/> when absent.</summary>
    /// <exception cref="CliUsageException">Not f16 or f32.</exception>
    public static KvCacheDtype ReadKvCacheDtype(ParseResult parse, Option<string?> option, KvCacheDtype fallback)
    {
        string? given = parse.GetValue(option);
        if (given is null)
        {
            return fallback;
        }

        try
        {
            return KvCacheDtypes.Parse(given);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }
    }
}
