using Dynamo.Engine.Serving;
using Dynamo.Runtime;

namespace Dynamo.Cli.Components;

/// <summary>Everything a worker is started with, from flags (`dynamo worker`), `dynamo run out=...` or a serve config.</summary>
internal sealed record WorkerSettings
{
    /// <summary>The model file or folder; null with <see cref="EngineKind"/> echo or mocker.</summary>
    public string? ModelPath { get; init; }

    public string? TokenizerPath { get; init; }

    /// <summary>The served model name (default: the file or folder name).</summary>
    public string? ServedModelName { get; init; }

    public EndpointAddress Address { get; init; } = new("dynamo", "backend", "generate");

    /// <summary>"dynamo" (the built-in engine), "echo" or "mocker".</summary>
    public string EngineKind { get; init; } = "dynamo";

    public bool IsPrefillWorker { get; init; }

    public EngineOptions Engine { get; init; } = EngineOptions.Default;

    public int Threads { get; init; } = Environment.ProcessorCount;

    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Port of the worker's /metrics, /health and /live (DYN_SYSTEM_PORT); null for none.</summary>
    public int? SystemPort { get; init; }

    /// <summary>Mocker only: KV pool size in blocks (default: the mocker's).</summary>
    public int? NumGpuBlocks { get; init; }

    /// <summary>Mocker only: simulated time runs this many times faster.</summary>
    public double SpeedupRatio { get; init; } = 1;

    /// <summary>Flags accepted for the guides' sake that change nothing here; each is named once at startup.</summary>
    public IReadOnlyList<string> IgnoredFlags { get; init; } = [];

    public string Name => ServedModelName ?? (ModelPath is null ? EngineKind : Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(ModelPath)));
}
