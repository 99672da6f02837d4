using System.Text.Json;

namespace Dynamo.Load.Reports;

/// <summary>How every bench writes its <c>--json</c> output: one JSON object, then a newline.</summary>
internal static class JsonReport
{
    /// <summary>Writes an object whose members <paramref name="writeMembers"/> writes, then '\n'.</summary>
    public static void Write(Stream output, bool indented, Action<Utf8JsonWriter> writeMembers)
    {
        using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = indented }))
        {
            writer.WriteStartObject();
            writeMembers(writer);
            writer.WriteEndObject();
        }

        output.WriteByte((byte)'\n');
    }
}
