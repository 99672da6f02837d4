namespace Dynamo.Runtime.EventPlane;

/// <summary>One published message.</summary>
/// <param name="Subject">The concrete subject it was published on.</param>
/// <param name="Payload">The bytes.</param>
public sealed record EventMessage(string Subject, ReadOnlyMemory<byte> Payload);
