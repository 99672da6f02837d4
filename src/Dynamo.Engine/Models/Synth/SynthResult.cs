namespace Dynamo.Engine.Models.Synth;

/// <summary>What <see cref="SynthModelWriter"/> wrote: the model path (file or directory), parameters, bytes.</summary>
public sealed record SynthResult(string Path, long Parameters, long Bytes);
