namespace Dynamo.Cli.Load;

/// <summary>One request of a conversation: the new user message and its max_tokens.</summary>
internal sealed record LoadTurn(string User, int MaxTokens);
