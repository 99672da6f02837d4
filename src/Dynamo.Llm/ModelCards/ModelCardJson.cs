using System.Text.Json;

namespace Dynamo.Llm.ModelCards;

/// <summary>Model cards as JSON (the wire contract); publishing and loading them through the runtime is Dynamo.Components' ModelCardStore.</summary>
public static class ModelCardJson
{
    /// <summary>The card as JSON.</summary>
    public static byte[] Serialize(ModelDeploymentCard card) => JsonSerializer.SerializeToUtf8Bytes(card, ModelCardJsonContext.Default.ModelDeploymentCard);

    /// <summary>A card from JSON; <see cref="JsonException"/> or <see cref="InvalidDataException"/> when it is not one.</summary>
    public static ModelDeploymentCard Deserialize(ReadOnlySpan<byte> json)
    {
        ModelDeploymentCard card = JsonSerializer.Deserialize(json, ModelCardJsonContext.Default.ModelDeploymentCard)
            ?? throw new InvalidDataException("model card is null");
        if (card.Version != ModelDeploymentCard.CurrentVersion)
        {
            throw new InvalidDataException($"model card version {card.Version} is not supported (this build reads {ModelDeploymentCard.CurrentVersion})");
        }

        return card;
    }
}
