using System.Text.Json;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelFiles;
using Dynamo.Llm.Tokenizers;

namespace Dynamo.Llm.ModelCards;

/// <summary>
/// What preprocessing needs from a model: its tokenizer, its chat template and the special-token strings
/// the template refers to. Read from GGUF metadata, a Hugging Face directory (tokenizer.json,
/// tokenizer_config.json, chat_template.jinja) or a llama2.c tokenizer.bin; the same code serves the
/// worker that has the model files and a frontend that rebuilt them from a model card.
/// </summary>
public sealed class TokenizerBundle
{
    private TokenizerBundle(ITokenizer tokenizer, ChatTemplate? chatTemplate, string? chatTemplateSource, string? bosToken, string? eosToken)
    {
        Tokenizer = tokenizer;
        ChatTemplate = chatTemplate;
        ChatTemplateSource = chatTemplateSource;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    /// <summary>The tokenizer.</summary>
    public ITokenizer Tokenizer { get; }

    /// <summary>The parsed chat template, or null when the model has none.</summary>
    public ChatTemplate? ChatTemplate { get; }

    /// <summary>The template's Jinja source, or null.</summary>
    public string? ChatTemplateSource { get; }

    /// <summary>The BOS token's text, for templates that use <c>bos_token</c>.</summary>
    public string? BosToken { get; }

    /// <summary>The EOS token's text, for templates that use <c>eos_token</c>.</summary>
    public string? EosToken { get; }

    /// <summary>From GGUF metadata (tokenizer.ggml.*, tokenizer.chat_template).</summary>
    public static TokenizerBundle FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (!file.ContainsKey("tokenizer.ggml.tokens"))
        {
            throw new ModelFormatException(file.Path, "the GGUF file has no tokenizer (tokenizer.ggml.tokens): pass one with --tokenizer");
        }

        ITokenizer tokenizer = TokenizerLoader.FromGguf(file.Metadata, file.Path);
        string? source = file.TryGetString("tokenizer.chat_template", out string? s) ? s : null;
        ChatTemplate? template = source is null ? null : ParseTemplate(file.Path, source);
        string[] tokens = file.GetArray<string>("tokenizer.ggml.tokens");
        string? Piece(int? id) => id is int i && (uint)i < (uint)tokens.Length ? tokens[i] : null;
        return new TokenizerBundle(tokenizer, template, source, Piece(tokenizer.BosTokenId),
            Piece(tokenizer.EosTokenIds.Count > 0 ? tokenizer.EosTokenIds[0] : null));
    }

    /// <summary>From a Hugging Face tokenizer.json or the directory holding it (and tokenizer_config.json, chat_template.jinja).</summary>
    public static TokenizerBundle FromHfDirectory(string tokenizerPath)
    {
        ITokenizer tokenizer = TokenizerLoader.FromTokenizerJson(tokenizerPath);
        string dir = Directory.Exists(tokenizerPath) ? tokenizerPath : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!;
        string configPath = Path.Combine(dir, "tokenizer_config.json");
        ChatTemplate? template = null;
        string? templateSource = null;
        string? bos = null, eos = null;
        string jinjaPath = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinjaPath))
        {
            templateSource = File.ReadAllText(jinjaPath);
            template = ParseTemplate(jinjaPath, templateSource);
        }

        if (File.Exists(configPath))
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
                JsonElement root = doc.RootElement;
                if (template is null && root.TryGetProperty("chat_template", out JsonElement t))
                {
                    templateSource = t.ValueKind switch
                    {
                        JsonValueKind.String => t.GetString(),
                        // A list of named templates: the "default" one is the chat template.
                        JsonValueKind.Array => t.EnumerateArray()
                            .Where(e => e.TryGetProperty("name", out JsonElement n) && n.GetString() == "default")
                            .Select(e => e.GetProperty("template").GetString()).FirstOrDefault(),
                        _ => null,
                    };
                    template = templateSource is null ? null : ParseTemplate(configPath, templateSource);
                }

                bos = TokenString(root, "bos_token");
                eos = TokenString(root, "eos_token");
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(configPath, $"invalid JSON: {e.Message}", e);
            }
        }

        return new TokenizerBundle(tokenizer, template, templateSource, bos, eos);
    }

    /// <summary>From a llama2.c tokenizer.bin (no chat template).</summary>
    public static TokenizerBundle FromLlama2c(string tokenizerBinPath, int vocabSize) =>
        new(TokenizerLoader.FromLlama2c(tokenizerBinPath, vocabSize), null, null, null, null);

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
}
