using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ChatTemplates;

namespace Dynamo.Cli.Components;

/// <summary>
/// The model `dynamo run` serves when none is given: the tiny synthesized Llama (seeded random weights,
/// byte-piece vocabulary, ChatML chat template), written once to a cache folder, so a new user can try
/// the whole system, chat included, with no download. Its text is random.
/// </summary>
internal static class DefaultModel
{
    public const string ServedName = "dynamo-tiny";

    /// <summary>The default model's context length; a larger one asked for (a config's max-model-len) is synthesized as a file of its own.</summary>
    public const int ContextLength = 2048;

    /// <summary>
    /// The default model's file, written on first use: with a context of <paramref name="contextLength"/> tokens when it asks
    /// for more than <see cref="ContextLength"/> (the configs standing in for the guides' models set it, so that the guides'
    /// requests fit as written: the stand-in's 512-piece vocabulary makes a prompt about six times as many tokens as a real
    /// tokenizer does). Same weights either way.
    /// </summary>
    public static string EnsurePath(int? contextLength = null)
    {
        int context = Math.Max(contextLength ?? ContextLength, ContextLength);
        string dir = Environment.GetEnvironmentVariable("DYNAMO_CACHE")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "dynamo");
        string path = Path.Combine(dir, context == ContextLength ? "dynamo-tiny-chatml-v1.gguf" : $"dynamo-tiny-chatml-v1-context{context}.gguf");
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(dir);
            string temp = $"{path}.{Environment.ProcessId}.tmp";
            SynthModelWriter.Write(SynthModelOptions.Tiny with { ContextLength = context }, SynthOutputOptions.Default with { OutputPath = temp, ChatTemplate = BuiltinChatTemplates.ChatMl });
            File.Move(temp, path, overwrite: true);
        }

        return path;
    }
}
