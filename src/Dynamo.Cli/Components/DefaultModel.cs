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

    public static string EnsurePath()
    {
        string dir = Environment.GetEnvironmentVariable("DYNAMO_CACHE")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "dynamo");
        string path = Path.Combine(dir, "dynamo-tiny-chatml-v1.gguf");
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(dir);
            string temp = $"{path}.{Environment.ProcessId}.tmp";
            SynthModelWriter.Write(SynthModelOptions.Tiny with { ContextLength = 2048 }, SynthOutputOptions.Default with { OutputPath = temp, ChatTemplate = BuiltinChatTemplates.ChatMl });
            File.Move(temp, path, overwrite: true);
        }

        return path;
    }
}
