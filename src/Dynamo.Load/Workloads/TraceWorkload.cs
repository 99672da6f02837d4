using System.Globalization;
using System.Text.Json;

namespace Dynamo.Load.Workloads;

/// <summary>
/// <c>trace:FILE</c>: replays the first num-prompts lines of a Mooncake trace (JSONL of
/// <see cref="TraceRecord"/>). Each hash id becomes a block of trace-block-tokens words that is the same
/// wherever the id appears (<see cref="SyntheticText.Block"/>), so shared leading ids give identical text
/// prefixes. Lengths scale by trace-block-tokens / 512 (1 with the default 512), then --input-len and
/// --output-len cap them when given; the prompt is the concatenated blocks cut to that many words.
/// Arrivals are the timestamps relative to the first line, divided by --trace-scale. <c>trace-tokens:FILE</c> sends
/// the same prompts as token ids, one per word (<see cref="SyntheticText.BlockTokens"/>), to /v1/completions: exact
/// lengths whatever the tokenizer, and the prompts the simulator replays.
/// </summary>
internal sealed class TraceWorkload(string path, bool tokenIds = false) : IWorkload
{
    public const string WorkloadPrefix = "trace:";

    public const string TokenWorkloadPrefix = "trace-tokens:";

    /// <summary>Tokens per hash id in the Mooncake traces.</summary>
    public const int TraceBlockSize = 512;

    public string Path { get; } = path;

    /// <summary>Whether prompts are token ids rather than text.</summary>
    public bool TokenIds => tokenIds;

    public string Name => (tokenIds ? TokenWorkloadPrefix : WorkloadPrefix) + Path;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        if (!File.Exists(Path))
        {
            throw new FileNotFoundException($"--workload trace: no file '{Path}'");
        }

        using var reader = new StreamReader(Path);
        List<TraceRecord> records = Read(reader, options.NumPrompts, Path);
        if (records.Count == 0)
        {
            throw new InvalidDataException($"--workload trace: '{Path}' has no requests");
        }

        return ToConversations(records, options, tokenIds);
    }

    /// <summary>Reads up to <paramref name="limit"/> records; blank lines are skipped; a bad line is an error naming its number.</summary>
    public static List<TraceRecord> Read(TextReader reader, int limit, string name = "trace")
    {
        var records = new List<TraceRecord>();
        int lineNumber = 0;
        while (records.Count < limit && reader.ReadLine() is string line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            try
            {
                using var doc = JsonDocument.Parse(line);
                JsonElement root = doc.RootElement;
                long timestamp = root.TryGetProperty("timestamp", out JsonElement ts) ? (long)ts.GetDouble() : 0;
                int input = root.GetProperty("input_length").GetInt32();
                int output = root.GetProperty("output_length").GetInt32();
                long[] ids = root.TryGetProperty("hash_ids", out JsonElement h) ? [.. h.EnumerateArray().Select(e => e.GetInt64())] : [];
                if (input < 0 || output < 0)
                {
                    throw new InvalidDataException("negative length");
                }

                records.Add(new TraceRecord(timestamp, input, output, ids));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or InvalidDataException)
            {
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"{name} line {lineNumber}: not a Mooncake trace record ({e.Message})"));
            }
        }

        return records;
    }

    /// <summary>One single-turn conversation per record, in arrival order; with <paramref name="tokenIds"/> the prompts are token ids.</summary>
    public static LoadConversation[] ToConversations(IReadOnlyList<TraceRecord> records, LoadOptions options, bool tokenIds = false)
    {
        long first = records.Min(r => r.TimestampMs);
        int block = options.TraceBlockTokens;
        var cache = new Dictionary<long, string[]>();
        var tokenCache = new Dictionary<long, int[]>();
        var conversations = new LoadConversation[records.Count];
        for (int i = 0; i < records.Count; i++)
        {
            TraceRecord r = records[i];
            int words = Math.Max(1, Scale(r.InputLength, block, options.InputLen));
            int output = Math.Max(1, Scale(r.OutputLength, block, options.OutputLen));
            var arrival = TimeSpan.FromMilliseconds((r.TimestampMs - first) / options.TraceScale);
            LoadTurn turn = tokenIds
                ? new LoadTurn("", output) { PromptTokenIds = PromptTokens(r, i, words, options.Seed, block, tokenCache) }
                : new LoadTurn(Prompt(r, i, words, options.Seed, block, cache), output);
            conversations[i] = new LoadConversation(null, [turn], arrival);
        }

        return [.. conversations.Select((c, i) => (c, i)).OrderBy(x => x.c.Arrival).ThenBy(x => x.i).Select(x => x.c)];
    }

    /// <summary>The trace length scaled to <paramref name="block"/> tokens per 512, then capped.</summary>
    public static int Scale(int length, int block, int? cap)
    {
        long scaled = ((long)length * block + TraceBlockSize - 1) / TraceBlockSize;
        return (int)Math.Min(scaled, cap ?? int.MaxValue);
    }

    /// <summary>
    /// The prompt: the blocks of the record's hash ids in order, cut to <paramref name="words"/> words;
    /// past the last hash id (a trace whose ids do not cover its length) words are drawn per request.
    /// </summary>
    public static string Prompt(TraceRecord record, int index, int words, int seed, int block, Dictionary<long, string[]>? cache = null) =>
        string.Join(' ', Fill(record, index, words, seed, block, cache, SyntheticText.Block));

    /// <summary><see cref="Prompt"/> as token ids, one per word (<see cref="SyntheticText.BlockTokens"/>).</summary>
    public static int[] PromptTokens(TraceRecord record, int index, int tokens, int seed, int block, Dictionary<long, int[]>? cache = null) =>
        Fill(record, index, tokens, seed, block, cache, SyntheticText.BlockTokens);

    /// <summary>The record's blocks (<paramref name="blockOf"/> of each hash id, cached), then per-request filler, cut to <paramref name="count"/>.</summary>
    private static T[] Fill<T>(TraceRecord record, int index, int count, int seed, int block, Dictionary<long, T[]>? cache, Func<int, long, int, T[]> blockOf)
    {
        var items = new T[count];
        int written = 0;
        foreach (long id in record.HashIds)
        {
            if (written == count)
            {
                break;
            }

            if (cache is null || !cache.TryGetValue(id, out T[]? blockItems))
            {
                blockItems = blockOf(seed, id, block);
                cache?.Add(id, blockItems);
            }

            int n = Math.Min(blockItems.Length, count - written);
            Array.Copy(blockItems, 0, items, written, n);
            written += n;
        }

        if (written < count)
        {
            Array.Copy(blockOf(seed, -1L - index, count - written), 0, items, written, count - written);
        }

        return items;
    }
}
