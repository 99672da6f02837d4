namespace Dynamo.Llm.Engines;

/// <summary>Why a sequence ended, with OpenAI's names (see <see cref="FinishReasonExtensions.ToWire"/>).</summary>
public enum FinishReason
{
    /// <summary>An end-of-sequence token, a stop token id or a stop string.</summary>
    Stop = 1,

    /// <summary>max_tokens reached, or the context is full.</summary>
    Length = 2,

    /// <summary>The request was cancelled.</summary>
    Cancelled = 3,
}

public static class FinishReasonExtensions
{
    public static string ToWire(this FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.Cancelled => "cancelled",
        _ => throw new ArgumentOutOfRangeException(nameof(reason)),
    };
}
