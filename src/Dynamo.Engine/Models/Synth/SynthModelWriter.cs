using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>Generates a random-weight Llama model and writes it as GGUF, Hugging Face or llama2.c files.</summary>
public static class SynthModelWriter
{
    public static SynthResult Write(SynthModelOptions model, SynthOutputOptions output)
    {
        SynthModelLayout layout = SynthModelLayout.Create(model);
        CheckType(output);
        SynthVocabulary vocabulary = output.TokenizerPath is null
            ? SynthVocabulary.Synthetic(model.VocabSize)
            : SynthVocabulary.FromLlama2c(output.TokenizerPath, model.VocabSize);
        vocabulary.ChatTemplate = output.ChatTemplate;
        return output.Format switch
        {
            SynthFormat.Gguf => WriteFile(ResolveFile(output.OutputPath, model.Name + ".gguf"), layout,
                s => SynthGgufWriter.Write(layout, vocabulary, output.Type, s)),
            SynthFormat.Llama2c => WriteLlama2c(layout, vocabulary, output),
            SynthFormat.HuggingFace => new SynthResult(output.OutputPath, layout.ParameterCount,
                HfModelWriter.Write(layout, vocabulary, output.Type, output.OutputPath)),
            _ => throw new ArgumentException($"unknown format {output.Format}"),
        };
    }

    /// <summary>The llama2.c tokenizer path for a model path: "x.bin" → "x.tokenizer.bin".</summary>
    public static string DefaultTokenizerPath(string modelPath)
    {
        string stem = modelPath.EndsWith(".bin", StringComparison.Ordinal) ? modelPath[..^4] : modelPath;
        return stem + ".tokenizer.bin";
    }

    private static void CheckType(SynthOutputOptions output)
    {
        bool ok = output.Format switch
        {
            SynthFormat.Gguf => output.Type is GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0 or GgmlType.Q4_0,
            SynthFormat.HuggingFace => output.Type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16,
            _ => output.Type is GgmlType.F32,
        };
        if (!ok)
        {
            string allowed = output.Format switch
            {
                SynthFormat.Gguf => "F32, F16, Q8_0 or Q4_0",
                SynthFormat.HuggingFace => "F32, F16 or BF16",
                _ => "F32",
            };
            throw new ArgumentException($"--type {output.Type} is not available for --format {FormatName(output.Format)} (use {allowed})");
        }
    }

    private static string FormatName(SynthFormat format) => format switch
    {
        SynthFormat.Gguf => "gguf",
        SynthFormat.HuggingFace => "hf",
        _ => "llama2c",
    };

    private static SynthResult WriteLlama2c(SynthModelLayout layout, SynthVocabulary vocabulary, SynthOutputOptions output)
    {
        string path = ResolveFile(output.OutputPath, layout.Options.Name + ".bin");
        SynthResult result = WriteFile(path, layout, s => Llama2cCheckpointWriter.Write(layout, s));
        string tokenizerPath = output.TokenizerOutputPath ?? DefaultTokenizerPath(path);
        if (output.TokenizerPath is not null)
        {
            File.Copy(output.TokenizerPath, tokenizerPath, overwrite: true);
        }
        else
        {
            using var stream = File.Create(tokenizerPath);
            vocabulary.WriteLlama2c(stream);
        }

        return result;
    }

    private static string ResolveFile(string outputPath, string defaultName) =>
        Directory.Exists(outputPath) ? Path.Combine(outputPath, defaultName) : outputPath;

    /// <summary>Writes through a temporary file beside the target, renamed into place when complete.</summary>
    internal static SynthResult WriteFile(string path, SynthModelLayout layout, Func<Stream, long> write)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new DirectoryNotFoundException($"{dir}: no such directory");
        }

        string temp = path + ".partial";
        long bytes;
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                bytes = write(stream);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        return new SynthResult(path, layout.ParameterCount, bytes);
    }
}
