using System.Text.Json;

namespace Dynamo.Components.Processing;

/// <summary>Where a streamed response's chunks go, each one JSON object (on the frontend, one SSE <c>data:</c> event).</summary>
internal interface IChunkWriter
{
    /// <summary>Starts a chunk: the writer for its JSON value.</summary>
    Utf8JsonWriter BeginChunk();

    /// <summary>Ends the chunk begun last.</summary>
    void EndChunk();
}
