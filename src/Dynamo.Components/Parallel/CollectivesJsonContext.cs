using System.Text.Json.Serialization;

namespace Dynamo.Components.Parallel;

/// <summary>Source-generated JSON of the rendezvous.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault)]
[JsonSerializable(typeof(RendezvousHello))]
[JsonSerializable(typeof(RendezvousReply))]
internal sealed partial class CollectivesJsonContext : JsonSerializerContext;
