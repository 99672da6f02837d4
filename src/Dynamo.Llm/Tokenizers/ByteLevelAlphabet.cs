namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// GPT-2's reversible map between the 256 byte values and printable characters ("Ġ" for a space), which
/// byte-level BPE vocabularies (Llama 3, Qwen, GPT-2) are written in.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    public static char CharOf(byte value) => ByteToChar[value];

    /// <summary>The byte-level form of raw bytes: one character per byte.</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (span, source) =>
        {
            for (int i = 0; i < source.Length; i++)
            {
                span[i] = ByteToChar[source[i]];
            }
        });
    }

    /// <summary>
    /// The bytes a byte-level token stands for; a token with a character outside the alphabet (an added
    /// token such as "&lt;|im_start|&gt;" spelled in plain text) stands for its own UTF-8, as Hugging Face decodes it.
    /// </summary>
    public static byte[] Decode(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i]))
            {
                return System.Text.Encoding.UTF8.GetBytes(token);
            }
        }

        return bytes;
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + next++);
        }

        return map;
    }
}
