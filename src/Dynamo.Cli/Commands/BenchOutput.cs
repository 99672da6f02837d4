namespace Dynamo.Cli.Commands;

/// <summary>How a bench command prints its result: one JSON object on stdout with <c>--json</c> (progress on stderr), else the table.</summary>
internal static class BenchOutput
{
    /// <summary>Where progress goes: stderr when stdout carries the JSON.</summary>
    public static TextWriter Log(bool asJson) => asJson ? Console.Error : Console.Out;

    /// <summary>Writes the result: <paramref name="writeJson"/> to stdout's stream, or <paramref name="writeTable"/> to the console.</summary>
    public static void Write(bool asJson, Action<Stream> writeJson, Action<TextWriter> writeTable)
    {
        if (asJson)
        {
            using Stream stdout = Console.OpenStandardOutput();
            writeJson(stdout);
        }
        else
        {
            writeTable(Console.Out);
        }
    }
}
