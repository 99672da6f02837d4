using System.Text.Json;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.Models;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Engine.Models;

/// <summary>
/// Everything one checkpoint brings: its weights, its tokenizer, and its chat template with the
/// special-token strings the template refers to. GGUF files carry all of it in their metadata; a
/// Hugging Face directory in tokenizer.json and tokenizer_config.json; a llama2.c checkpoint needs its
/// tokenizer file given separately and has no chat template.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(IModelWeights weights, ITokenizer tokenizer, ChatTemplate? template, string? bosToken, string? eosToken)
    {
        Weights = weights;
        Tokenizer = tokenizer;
        ChatTemplate = template;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    public IModelWeights Weights { get; }
    public ModelConfig Config => Weights.Config;
    public ITokenizer Tokenizer { get; }
    public ChatTemplate? ChatTemplate { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>
    /// Loads <paramref name="modelPath"/> (GGUF file, Hugging Face directory or llama2.c checkpoint).
    /// <paramref name="tokenizerPath"/> overrides the model's own tokenizer: a tokenizer.json (or its
    /// directory) or a llama2.c tokenizer.bin; it is required for llama2.c checkpoints.
    /// </summary>
    public static LoadedModel Load(string modelPath, string? tokenizerPath = null)
    {
        IModelWeights weights = ModelLoader.Load(modelPath);
        try
        {
            return weights switch
            {
                GgufModel g => FromGguf(g, tokenizerPath),
                SafeTensorsModel => FromHfDirectory(weights, tokenizerPath ?? weights.Source),
                _ => FromSeparateTokenizer(weights, tokenizerPath
                    ?? throw new ModelFormatException(modelPath, "a llama2.c checkpoint has no tokenizer inside: pass its tokenizer file with --tokenizer")),
            };
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private static LoadedModel FromGguf(GgufModel g, string? tokenizerPath)
    {
        if (tokenizerPath is not null)
        {
            return FromSeparateTokenizer(g, tokenizerPath);
        }

        if (!g.File.ContainsKey("tokenizer.ggml.tokens"))
        {
            throw new ModelFormatException(g.Source, "the GGUF file has no tokenizer (tokenizer.ggml.tokens): pass one with --tokenizer");
        }

        ITokenizer tokenizer = TokenizerLoader.FromGguf(g.File.Metadata, g.Source);
        ChatTemplate? template = g.File.TryGetString("tokenizer.chat_template", out string? source)
            ? ParseTemplate(g.Source, source) : null;
        string[] tokens = g.File.GetArray<string>("tokenizer.ggml.tokens");
        string? Piece(int? id) => id is int i && (uint)i < (uint)tokens.Length ? tokens[i] : null;
        return new LoadedModel(g, tokenizer, template, Piece(tokenizer.BosTokenId),
            Piece(tokenizer.EosTokenIds.Count > 0 ? tokenizer.EosTokenIds[0] : null));
    }

    private static LoadedModel FromSeparateTokenizer(IModelWeights weights, string tokenizerPath)
    {
        if (Directory.Exists(tokenizerPath) || tokenizerPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            return FromHfDirectory(weights, tokenizerPath);
        }

        if (!File.Exists(tokenizerPath))
        {
            throw new ModelFormatException(tokenizerPath, "tokenizer file not found");
        }

        ITokenizer tokenizer = TokenizerLoader.FromLlama2c(tokenizerPath, weights.Config.VocabSize);
        return new LoadedModel(weights, tokenizer, null, null, null);
    }

    private static LoadedModel FromHfDirectory(IModelWeights weights, string tokenizerPath)
    {
        ITokenizer tokenizer = TokenizerLoader.FromTokenizerJson(tokenizerPath);
        string dir = Directory.Exists(tokenizerPath) ? tokenizerPath : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!;
        string configPath = Path.Combine(dir, "tokenizer_config.json");
        ChatTemplate? template = null;
        string? bos = null, eos = null;
        string jinjaPath = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinjaPath))
        {
            template = ParseTemplate(jinjaPath, File.ReadAllText(jinjaPath));
        }

        if (File.Exists(configPath))
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
                JsonElement root = doc.RootElement;
                if (template is null && root.TryGetProperty("chat_template", out JsonElement t))
                {
                    string? source = t.ValueKind switch
                    {
                        JsonValueKind.String => t.GetString(),
                        // A list of named templates: the "default" one is the chat template.
                        JsonValueKind.Array => t.EnumerateArray()
                            .Where(e => e.TryGetProperty("name", out JsonElement n) && n.GetString() == "default")
                            .Select(e => e.GetProperty("template").GetString()).FirstOrDefault(),
                        _ => null,
                    };
                    template = source is null ? null : ParseTemplate(configPath, source);
                }

                bos = TokenString(root, "bos_token");
                eos = TokenString(root, "eos_token");
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(configPath, $"invalid JSON: {e.Message}", e);
            }
        }

        return new LoadedModel(weights, tokenizer, template, bos, eos);
    }

    private static string? TokenString(JsonElement root, string name) =>
        !root.TryGetProperty(name, out JsonElement v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out JsonElement c) ? c.GetString()
        : null;

    private static ChatTemplate ParseTemplate(string path, string source)
    {
        try
        {
            return ChatTemplate.Parse(source);
        }
        catch (ChatTemplateException e)
        {
            throw new ModelFormatException(path, $"chat template: {e.Message}", e);
        }
    }

    /// <summary>Renders a conversation with the model's template, ready to be tokenized (special tokens included as text).</summary>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? extra = null)
    {
        ChatTemplate template = ChatTemplate ?? throw new ModelFormatException(Weights.Source, "the model has no chat template");
        return template.RenderChat(messages, addGenerationPrompt, BosToken, EosToken, extra);
    }

    public void Dispose() => Weights.Dispose();
}
