using System.Text;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>Discovery values as UTF-8 text, for tests.</summary>
internal static class Utf8
{
    public static ReadOnlyMemory<byte> Bytes(string s) => Encoding.UTF8.GetBytes(s);

    public static string Text(ReadOnlyMemory<byte> bytes) => Encoding.UTF8.GetString(bytes.Span);
}
