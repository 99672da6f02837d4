using System.Text.Json;

namespace Dynamo.Components.Processing;

/// <summary>What every chunk of one response repeats: its id, model and creation time (id and model JSON-encoded once).</summary>
internal sealed class ResponseHead(string id, string model, long created)
{
    public string Id { get; } = id;

    public string Model { get; } = model;

    /// <summary>Unix seconds.</summary>
    public long Created { get; } = created;

    public JsonEncodedText EncodedId { get; } = JsonEncodedText.Encode(id);

    public JsonEncodedText EncodedModel { get; } = JsonEncodedText.Encode(model);
}
