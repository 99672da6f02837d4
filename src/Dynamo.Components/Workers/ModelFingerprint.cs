using System.Security.Cryptography;
using System.Text;

namespace Dynamo.Components.Workers;

/// <summary>
/// A cheap identity of a model's weights, so that a decode worker never imports KV computed by another model
/// served under the same name: SHA-256 over each weight file's length, first and last MiB (a GGUF file, a
/// llama2.c checkpoint, or a Hugging Face folder's config.json and *.safetensors, with their names). The same
/// weights give the same fingerprint wherever they lie and whatever a single file is called. 16 hex digits.
/// </summary>
public static class ModelFingerprint
{
    private const int Sample = 1 << 20;

    /// <summary>The fingerprint of the model at <paramref name="path"/> (a file or a Hugging Face folder).</summary>
    public static string Of(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        bool folder = Directory.Exists(path);
        string[] files = folder
            ? [.. Directory.EnumerateFiles(path).Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal) || Path.GetFileName(f) == "config.json").Order(StringComparer.Ordinal)]
            : [path];
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[Sample];
        foreach (string file in files)
        {
            using FileStream stream = File.OpenRead(file);
            sha.AppendData(Encoding.UTF8.GetBytes($"{(folder ? Path.GetFileName(file) : "")}:{stream.Length};"));
            sha.AppendData(buffer.AsSpan(0, stream.ReadAtLeast(buffer, Sample, throwOnEndOfStream: false)));
            if (stream.Length > Sample)
            {
                stream.Seek(Math.Max(Sample, stream.Length - Sample), SeekOrigin.Begin);
                sha.AppendData(buffer.AsSpan(0, stream.ReadAtLeast(buffer, Sample, throwOnEndOfStream: false)));
            }
        }

        return Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }
}
