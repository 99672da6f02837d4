using System.Text.Json.Serialization;

namespace Dynamo.Llm.ModelCards;

/// <summary>
/// What a worker publishes at <c>v1/mdc/{ns}/{comp}/{ep}/{instance:hex}</c> so that a frontend on another
/// host, without the model files, can serve the model: its served name, limits, and the tokenizer and chat
/// template files as content-addressed blobs (<c>v1/blobs/{sha256}</c>). JSON, snake_case, version 1;
/// readers ignore unknown fields.
/// </summary>
public sealed record ModelDeploymentCard
{
    /// <summary>The card format this build writes.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Card format version.</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = CurrentVersion;

    /// <summary>The served model name (what requests put in "model").</summary>
    [JsonPropertyName("name")]
    public required string Name { get; init; }

    /// <summary>The endpoint that serves it, "namespace.component.endpoint".</summary>
    [JsonPropertyName("endpoint")]
    public required string Endpoint { get; init; }

    /// <summary>Context length in tokens (prompt + generated).</summary>
    [JsonPropertyName("context_length")]
    public int ContextLength { get; init; }

    /// <summary>KV-cache block size in tokens (the router hashes prompts in blocks of this size).</summary>
    [JsonPropertyName("kv_block_size")]
    public int KvBlockSize { get; init; }

    /// <summary>"gguf" (metadata-only GGUF), "hf" (tokenizer.json and friends) or "llama2c" (tokenizer.bin).</summary>
    [JsonPropertyName("tokenizer_format")]
    public required string TokenizerFormat { get; init; }

    /// <summary>File name to the SHA-256 of its blob.</summary>
    [JsonPropertyName("tokenizer_files")]
    public required IReadOnlyDictionary<string, string> TokenizerFiles { get; init; }

    /// <summary>Vocabulary size (llama2c tokenizers need it to load).</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>Whether a chat template is included (chat completions are possible).</summary>
    [JsonPropertyName("has_chat_template")]
    public bool HasChatTemplate { get; init; }

    /// <summary>The worker's role: "aggregated", "prefill" or "decode".</summary>
    [JsonPropertyName("role")]
    public string Role { get; init; } = "aggregated";

    /// <summary>
    /// Whether this worker (aggregated or decode) takes remote prefills when the model has prefill workers
    /// (false: the guides' <c>remote-prefill: false</c>, it always prefills locally). Absent: true.
    /// </summary>
    [JsonPropertyName("remote_prefill")]
    public bool RemotePrefill { get; init; } = true;
}
