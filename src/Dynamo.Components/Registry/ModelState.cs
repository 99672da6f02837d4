using Dynamo.Llm.ModelCards;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Components.Registry;

/// <summary>
/// The mutable, thread-safe part of a served model that outlives registry snapshots: its tokenizer,
/// loaded once from the first card seen (a failed load is retried by the next request).
/// </summary>
internal sealed class ModelState(string name, Func<ModelDeploymentCard, CancellationToken, Task<TokenizerBundle>> loadTokenizer, ModelDeploymentCard firstCard)
{
    private readonly Lock _lock = new();
    private Task<Preprocessor>? _preprocessor;

    public string Name { get; } = name;

    public long CreatedUnixSeconds { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public ModelDeploymentCard FirstCard { get; } = firstCard;

    /// <summary>The model's preprocessor, loading the tokenizer on first use.</summary>
    public Task<Preprocessor> GetPreprocessorAsync()
    {
        lock (_lock)
        {
            if (_preprocessor is null || _preprocessor.IsFaulted || _preprocessor.IsCanceled)
            {
                _preprocessor = LoadAsync();
            }

            return _preprocessor;
        }
    }

    private async Task<Preprocessor> LoadAsync()
    {
        TokenizerBundle bundle = await loadTokenizer(FirstCard, CancellationToken.None).ConfigureAwait(false);
        return new Preprocessor(bundle, FirstCard.ContextLength);
    }
}
