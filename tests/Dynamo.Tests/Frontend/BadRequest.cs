namespace Dynamo.Tests.Frontend;

/// <summary>One generated request.</summary>
internal sealed record BadRequest(int Index, string Method, string Path, string? ContentType, byte[] Body, string Mutations);
