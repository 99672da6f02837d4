using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Infrastructure;

/// <summary>Model files the tests synthesize once per run.</summary>
internal static class TestModels
{
    /// <summary>The tiny synthesized Llama (F32, ChatML template) as a GGUF file.</summary>
    public static readonly Lazy<string> Tiny = new(() => Write("tiny.gguf", SynthModelOptions.Tiny));

    /// <summary>The same with an 8192-token context: room for the guides' long prompts, which its byte-level tokenizer makes about one token a character.</summary>
    public static readonly Lazy<string> TinyLongContext = new(() => Write("tiny-8k.gguf", SynthModelOptions.Tiny with { ContextLength = 8192 }));

    private static string Write(string name, SynthModelOptions options)
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-worker-tests", Guid.NewGuid().ToString("N"), name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(options, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32, ChatTemplate = BuiltinChatTemplates.ChatMl });
        return path;
    }
}
