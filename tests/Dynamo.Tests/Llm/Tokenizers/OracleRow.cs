using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.Tokenizers;

/// <summary>One row of shared/oracle/tokenizers/*.jsonl (reference ids and decodes from Hugging Face / SentencePiece).</summary>
public sealed record OracleRow(string Text, bool AddSpecialTokens, int[] Ids, string Decoded, string? DecodedSkipSpecialTokens)
{
    /// <summary>MemberData rows (file, row index); a single placeholder row when ../shared is absent (the theory is then skipped).</summary>
    public static TheoryData<string, int> Indexes(string file)
    {
        var data = new TheoryData<string, int>();
        if (!SharedData.Available)
        {
            data.Add(file, -1);
            return data;
        }

        int count = File.ReadLines(SharedData.Path("oracle", "tokenizers", file + ".jsonl")).Count(l => l.Length > 0);
        for (int i = 0; i < count; i++)
        {
            data.Add(file, i);
        }

        return data;
    }

    public static OracleRow Load(string file, int index)
    {
        string line = File.ReadLines(SharedData.Path("oracle", "tokenizers", file + ".jsonl")).Where(l => l.Length > 0).ElementAt(index);
        var e = JsonDocument.Parse(line).RootElement;
        return new OracleRow(
            e.GetProperty("text").GetString()!,
            e.GetProperty("add_special_tokens").GetBoolean(),
            e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            e.GetProperty("decoded").GetString()!,
            e.TryGetProperty("decoded_skip_special_tokens", out var s) ? s.GetString() : null);
    }
}
