using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Infrastructure;

/// <summary>Model files the tests synthesize once per run.</summary>
internal static class TestModels
{
    /// <summary>The tiny synthesized Llama (F32, ChatML template) as a GGUF file.</summary>
    public static readonly Lazy<string> Tiny = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-worker-tests", Guid.NewGuid().ToString("N"), "tiny.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32, ChatTemplate = BuiltinChatTemplates.ChatMl });
        return path;
    });
}
