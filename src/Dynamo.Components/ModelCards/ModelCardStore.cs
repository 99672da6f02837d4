using System.Text.Json;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.ModelFiles;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;

namespace Dynamo.Components.ModelCards;

/// <summary>
/// Model cards through the runtime: publishing a worker's card with its tokenizer files as blobs (worker
/// side), listing the cards, and rebuilding a model's tokenizer from one (frontend and processor side).
/// </summary>
public static class ModelCardStore
{
    private static readonly string[] HfFiles = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"];

    /// <summary>
    /// Stores the tokenizer files as blobs and publishes the card for <paramref name="address"/> under the
    /// runtime's lease. For a GGUF model only the tokenizer metadata travels (a GGUF with no tensors).
    /// </summary>
    public static async Task<ModelDeploymentCard> PublishAsync(DistributedRuntime runtime, EndpointAddress address, ModelCardSource source, string role = "aggregated", CancellationToken cancellationToken = default, bool remotePrefill = true)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(source);
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        bool hasTemplate;
        switch (source.TokenizerFormat)
        {
            case "gguf":
            {
                GgufFile gguf = GgufFile.Read(source.TokenizerPath);
                byte[] metadata = TokenizerOnlyGguf(gguf);
                files["tokenizer.gguf"] = await runtime.Blobs.PutAsync(metadata, cancellationToken).ConfigureAwait(false);
                hasTemplate = gguf.ContainsKey("tokenizer.chat_template");
                break;
            }

            case "hf":
            {
                string dir = Directory.Exists(source.TokenizerPath) ? source.TokenizerPath : Path.GetDirectoryName(Path.GetFullPath(source.TokenizerPath))!;
                foreach (string name in HfFiles)
                {
                    string path = Path.Combine(dir, name);
                    if (File.Exists(path))
                    {
                        files[name] = await runtime.Blobs.PutAsync(await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
                    }
                }

                hasTemplate = TokenizerBundle.FromHfDirectory(dir).ChatTemplate is not null;
                break;
            }

            case "llama2c":
                files["tokenizer.bin"] = await runtime.Blobs.PutAsync(await File.ReadAllBytesAsync(source.TokenizerPath, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
                hasTemplate = false;
                break;
            default:
                throw new ArgumentException($"unknown tokenizer format '{source.TokenizerFormat}' (gguf, hf or llama2c)", nameof(source));
        }

        var card = new ModelDeploymentCard
        {
            Name = source.ServedName,
            Endpoint = address.ToString(),
            ContextLength = source.ContextLength,
            KvBlockSize = source.KvBlockSize,
            TokenizerFormat = source.TokenizerFormat,
            TokenizerFiles = files,
            VocabSize = source.VocabSize,
            HasChatTemplate = hasTemplate,
            Role = role,
            RemotePrefill = remotePrefill,
        };
        await runtime.PublishModelCardAsync(address, ModelCardJson.Serialize(card), cancellationToken).ConfigureAwait(false);
        return card;
    }

    /// <summary>Every card published under <paramref name="prefix"/> (default: all), skipping (not failing on) malformed ones.</summary>
    public static async Task<IReadOnlyList<(string Key, ModelDeploymentCard Card)>> ListAsync(IDiscovery discovery, string prefix = EndpointAddress.ModelCardsRoot, CancellationToken cancellationToken = default)
    {
        var cards = new List<(string, ModelDeploymentCard)>();
        foreach (DiscoveryEntry entry in await discovery.GetPrefixAsync(prefix, cancellationToken).ConfigureAwait(false))
        {
            try
            {
                cards.Add((entry.Key, ModelCardJson.Deserialize(entry.Value.Span)));
            }
            catch (Exception e) when (e is JsonException or InvalidDataException)
            {
                // A card this build cannot read is not a model it can serve.
            }
        }

        return cards;
    }

    /// <summary>
    /// Rebuilds the model's tokenizer and chat template from the card's blobs, written under
    /// <paramref name="cacheDirectory"/> (one folder per distinct set of files, reused).
    /// </summary>
    public static async Task<TokenizerBundle> LoadTokenizerAsync(ModelDeploymentCard card, BlobStore blobs, string cacheDirectory, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(card);
        ArgumentNullException.ThrowIfNull(blobs);
        string id = BlobStore.HashOf(System.Text.Encoding.UTF8.GetBytes(string.Join(';', card.TokenizerFiles.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key}={f.Value}"))))[..16];
        string dir = Path.Combine(cacheDirectory, id);
        Directory.CreateDirectory(dir);
        foreach (var (name, hash) in card.TokenizerFiles)
        {
            if (name.Contains('/') || name.Contains('\\') || name.StartsWith('.'))
            {
                throw new InvalidDataException($"model card '{card.Name}' names a bad file '{name}'");
            }

            string path = Path.Combine(dir, name);
            if (File.Exists(path) && BlobStore.HashOf(await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false)) == hash)
            {
                continue;
            }

            byte[] content = await blobs.GetAsync(hash, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidDataException($"model card '{card.Name}': blob {hash} ({name}) is missing from discovery");
            // A temporary name of this load's own: two loads of one card in one process (a frontend and a
            // processor, two models sharing a tokenizer) or in two processes never share a temporary file.
            string temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            try
            {
                await File.WriteAllBytesAsync(temp, content, cancellationToken).ConfigureAwait(false);
                File.Move(temp, path, overwrite: true);
            }
            finally
            {
                File.Delete(temp);
            }
        }

        return card.TokenizerFormat switch
        {
            "gguf" => TokenizerBundle.FromGguf(GgufFile.Read(Path.Combine(dir, "tokenizer.gguf"))),
            "hf" => TokenizerBundle.FromHfDirectory(dir),
            "llama2c" => TokenizerBundle.FromLlama2c(Path.Combine(dir, "tokenizer.bin"), card.VocabSize),
            _ => throw new InvalidDataException($"model card '{card.Name}': unknown tokenizer format '{card.TokenizerFormat}'"),
        };
    }

    /// <summary>A GGUF file with the tokenizer metadata of <paramref name="gguf"/> and no tensors (what a card carries for a GGUF model).</summary>
    private static byte[] TokenizerOnlyGguf(GgufFile gguf)
    {
        using var stream = new MemoryStream();
        var writer = new GgufWriter(stream);
        foreach (var (key, value) in gguf.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (key.StartsWith("tokenizer.", StringComparison.Ordinal) || key == "general.architecture")
            {
                writer.AddObject(key, value);
            }
        }

        writer.WriteHeader();
        writer.Finish();
        return stream.ToArray();
    }
}
