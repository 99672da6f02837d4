using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.ModelFiles;
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
    private LoadedModel(IModelWeights weights, TokenizerBundle text)
    {
        Weights = weights;
        Text = text;
    }

    public IModelWeights Weights { get; }
    public ModelConfig Config => Weights.Config;

    /// <summary>Tokenizer, chat template and special-token strings (what a model card carries to a frontend).</summary>
    public TokenizerBundle Text { get; }
    public ITokenizer Tokenizer => Text.Tokenizer;
    public ChatTemplate? ChatTemplate => Text.ChatTemplate;
    public string? BosToken => Text.BosToken;
    public string? EosToken => Text.EosToken;

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

    private static LoadedModel FromGguf(GgufModel g, string? tokenizerPath) =>
        tokenizerPath is not null ? FromSeparateTokenizer(g, tokenizerPath) : new LoadedModel(g, TokenizerBundle.FromGguf(g.File));

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

        return new LoadedModel(weights, TokenizerBundle.FromLlama2c(tokenizerPath, weights.Config.VocabSize));
    }

    private static LoadedModel FromHfDirectory(IModelWeights weights, string tokenizerPath) =>
        new(weights, TokenizerBundle.FromHfDirectory(tokenizerPath));

    /// <summary>Renders a conversation with the model's template, ready to be tokenized (special tokens included as text).</summary>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? extra = null)
    {
        ChatTemplate template = ChatTemplate ?? throw new ModelFormatException(Weights.Source, "the model has no chat template");
        return template.RenderChat(messages, addGenerationPrompt, BosToken, EosToken, extra);
    }

    public void Dispose() => Weights.Dispose();
}
