namespace Dynamo.Load.Client;

/// <summary>One message of a chat request: role (system, user, assistant) and text.</summary>
internal readonly record struct ChatMessage(string Role, string Content);
