using Dynamo.Components.Workers;
using Dynamo.Mocker;

namespace Dynamo.Load.Simulation;

/// <summary>
/// The named cost models of simulated workers (<c>--profile</c>): the mocker's options for one kind of worker.
/// Sources and derivations are in docs/simulation.md; every figure can be overridden by its mocker flag.
/// </summary>
internal static class WorkerProfiles
{
    /// <summary>The default profile.</summary>
    public const string Default = Gpu8B;

    /// <summary>
    /// An 8B-parameter model in 16-bit weights on one H100-class GPU: the mocker's defaults. Step 8 ms (16 GB of weights
    /// read once at 3.35 TB/s, the H100 SXM datasheet's bandwidth, is 4.8 ms; 60% of peak), prefill 0.05 ms a token (16
    /// GFLOP a token at about 330 TFLOP/s, a third of the datasheet's 989 dense BF16 TFLOP/s), 0.1 ms per decoding sequence;
    /// a KV pool of 16,384 blocks of 16 (262k tokens at Llama-3-8B's 128 KiB a token: 32 GiB), 256 sequences, 8,192-token steps;
    /// Llama-3.1's context of 131,072 tokens (the mocker's default of 32,768 would refuse the Mooncake traces' longest prompts).
    /// </summary>
    public const string Gpu8B = "gpu-8b";

    /// <summary>
    /// A 70B-parameter model in 16-bit weights, tensor-parallel over 8 H100-class GPUs: 140 GB of weights over 8 x 3.35 TB/s
    /// is 5.2 ms, with all-reduces 12 ms a step; prefill 140 GFLOP a token over 8 x 330 TFLOP/s, 0.055 ms; 0.25 ms per
    /// decoding sequence; 65,536 blocks of 16 (1M tokens at Llama-3-70B's 320 KiB a token: 320 GiB of the 640 GB).
    /// </summary>
    public const string Gpu70BTp8 = "gpu-70b-tp8";

    /// <summary>
    /// Our own engine on this machine's CPU: the 110m model in Q8_0 on 2 threads (docs/benchmarks.md, issue 2's second
    /// table and batched decode): pp512 about 900 tok/s gives 1.1 ms a prefill token; one sequence decodes at about 185
    /// tok/s (5.4 ms a step) and 16 at about 715 tok/s (22.4 ms a step), so 4.3 ms a step plus 1.1 ms a sequence. The
    /// engine's own limits: 512-token steps, 64 sequences, a 4,096-token context, 2,048 blocks of 16.
    /// </summary>
    public const string Cpu110M = "cpu-110m";

    /// <summary>Llama-3.1's context length.</summary>
    private const int LlamaContext = 131072;

    /// <summary>The names, for messages.</summary>
    public const string Names = "gpu-8b, gpu-70b-tp8 or cpu-110m";

    /// <summary>The profile's mocker options; a one-line error naming <c>--profile</c> for an unknown name.</summary>
    public static MockerOptions Get(string name) => name switch
    {
        Gpu8B => MockerOptions.Default with { ContextLength = LlamaContext },
        Gpu70BTp8 => MockerOptions.Default with { StepMs = 12, PrefillMsPerToken = 0.055, DecodeMsPerSequence = 0.25, NumGpuBlocks = 65536, ContextLength = LlamaContext },
        Cpu110M => MockerOptions.Default with
        {
            StepMs = 4.3,
            PrefillMsPerToken = 1.1,
            DecodeMsPerSequence = 1.1,
            NumGpuBlocks = 2048,
            MaxNumSeqs = 64,
            MaxNumBatchedTokens = 512,
            ContextLength = 4096,
        },
        _ => throw new ArgumentException($"--profile: '{name}' is not {Names}"),
    };

    /// <summary>
    /// The link a remote prefill's KV crosses from a prefill worker to a decode worker of the profile (<c>--kv-transfer-gbps</c>
    /// overrides the bandwidth). gpu-8b: Llama-3-8B's KV, 2 x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB a token,
    /// over one 400 Gbit/s InfiniBand NDR port (the DGX H100 datasheet: one ConnectX-7 port of 400 Gb/s per GPU).
    /// gpu-70b-tp8: Llama-3-70B's, 2 x 80 x 8 x 128 x 2 = 320 KiB a token, each of the 8 ranks sending its own heads over its
    /// own port: 8 x 400 Gbit/s. cpu-110m: bench disagg's link (<see cref="SimulatedKvLink.Default"/>: the 110m model's KV in
    /// f32 over 10 Gbit/s). Latency 50 us a transfer for all.
    /// </summary>
    public static SimulatedKvLink Link(string name) => name switch
    {
        Gpu8B => SimulatedKvLink.Default with { BytesPerToken = 2L * 32 * 8 * 128 * 2, Gbps = 400 },
        Gpu70BTp8 => SimulatedKvLink.Default with { BytesPerToken = 2L * 80 * 8 * 128 * 2, Gbps = 8 * 400 },
        Cpu110M => SimulatedKvLink.Default,
        _ => throw new ArgumentException($"--profile: '{name}' is not {Names}"),
    };

    /// <summary>GPUs one worker of the profile takes (0: a CPU worker).</summary>
    public static int GpusPerWorker(string name) => name switch
    {
        Gpu8B => 1,
        Gpu70BTp8 => 8,
        Cpu110M => 0,
        _ => throw new ArgumentException($"--profile: '{name}' is not {Names}"),
    };
}
