namespace Dynamo.Llm.Preprocessing;

/// <summary>Whether and how log probabilities are returned.</summary>
public enum LogprobsFormat
{
    /// <summary>Not asked for.</summary>
    None = 0,

    /// <summary>Chat: <c>logprobs.content[]</c>.</summary>
    Chat = 1,

    /// <summary>Completions: parallel arrays (tokens, token_logprobs, top_logprobs, text_offset).</summary>
    Completion = 2,
}
