using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// Opens a checkpoint by looking at it: a directory is Hugging Face safetensors, a file starting with "GGUF"
/// (or named *.gguf, so that a wrong magic is reported as such) is GGUF, any other file a llama2.c checkpoint.
/// </summary>
public static class ModelLoader
{
    public static IModelWeights Load(string path)
    {
        if (Directory.Exists(path))
        {
            return SafeTensorsModel.Open(path);
        }

        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "no such file or directory");
        }

        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            return SafeTensorsModel.Open(Path.GetDirectoryName(Path.GetFullPath(path))!);
        }

        Span<byte> magic = stackalloc byte[4];
        int read;
        using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
        {
            read = f.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        }

        if ((read == 4 && magic.SequenceEqual("GGUF"u8)) || path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            return GgufModel.Open(path);
        }

        return Llama2cModel.Open(path);
    }
}
