using System.Text;
using System.Text.Json.Nodes;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// Seeded bad (and some good) requests for the frontend: valid chat and completions requests, then one to
/// three mutations each, structural (a field of the wrong type, a huge or negative number, a NaN-like
/// string, nested garbage, a missing field, an unsupported field, a huge array, a lone surrogate) or on
/// the bytes (truncated JSON, invalid UTF-8, a flipped byte, a BOM, garbage), and now and then an odd
/// path, method or Content-Type. Case <c>i</c> of a seed is always the same request.
/// </summary>
internal static class BadRequestGenerator
{
    // Raw JSON the serializer cannot write: placed as marker strings, substituted after serializing.
    private const string LoneHigh = "@@LONE_HIGH@@";
    private const string LoneLow = "@@LONE_LOW@@";
    private const string Deep = "@@DEEP@@";
    private const string Nan = "@@NAN@@";
    private const string HugeNumber = "@@HUGE_NUMBER@@";

    private static readonly string[] Fields =
    [
        "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "n", "stop", "seed",
        "presence_penalty", "frequency_penalty", "repetition_penalty", "logprobs", "top_logprobs", "ignore_eos", "stream", "stream_options",
        "user", "nvext", "echo", "best_of", "suffix", "tools", "tool_choice", "functions", "function_call", "response_format", "logit_bias",
        "min_tokens", "parallel_tool_calls", "audio", "modalities", "prediction", "store", "metadata", "", "\u00e9", "__proto__",
    ];

    private static readonly string[] ContentTypes =
    [
        "application/json", "text/plain", "application/xml", "multipart/form-data; boundary=b", "application/json; charset=utf-16",
        "application/octet-stream", "application/json; charset=latin1", "", "application/x-www-form-urlencoded", "text/event-stream",
    ];

    private static readonly string[] Paths = ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/v1/chat/completions/", "/", "/v1/completions?x=1", "/V1/COMPLETIONS", "/health"];

    /// <summary>Case <paramref name="index"/> of <paramref name="seed"/>.</summary>
    public static BadRequest Create(int seed, int index)
    {
        var random = new Random(HashCode.Combine(seed, index));
        bool chat = random.Next(2) == 0;
        JsonObject request = chat ? ValidChat(random) : ValidCompletion(random);
        var applied = new List<string>();
        int structural = random.Next(0, 4);
        for (int i = 0; i < structural; i++)
        {
            applied.Add(MutateStructure(random, request));
        }

        string json = request.ToJsonString()
            .Replace(LoneHigh, "\\ud800", StringComparison.Ordinal)
            .Replace(LoneLow, "\\udc01", StringComparison.Ordinal)
            .Replace($"\"{Deep}\"", string.Concat(Enumerable.Repeat("[{\"a\":", 40)) + "1" + string.Concat(Enumerable.Repeat("}]", 40)), StringComparison.Ordinal)
            .Replace($"\"{Nan}\"", "NaN", StringComparison.Ordinal)
            .Replace($"\"{HugeNumber}\"", "1" + new string('0', 400), StringComparison.Ordinal);
        byte[] body = Encoding.UTF8.GetBytes(json);
        if (structural == 0 || random.Next(4) == 0)
        {
            (body, string what) = MutateBytes(random, body);
            applied.Add(what);
        }

        string path = Paths[chat ? 0 : 1];
        string method = "POST";
        string? contentType = "application/json";
        if (random.Next(20) == 0)
        {
            path = Paths[random.Next(Paths.Length)];
            method = random.Next(3) == 0 ? "GET" : random.Next(2) == 0 ? "PUT" : "POST";
            applied.Add($"{method} {path}");
        }

        if (random.Next(15) == 0)
        {
            contentType = ContentTypes[random.Next(ContentTypes.Length)];
            contentType = contentType.Length == 0 ? null : contentType;
            applied.Add($"content-type {contentType ?? "none"}");
        }

        return new BadRequest(index, method, path, contentType, body, string.Join("; ", applied));
    }

    private static JsonObject ValidChat(Random random)
    {
        var messages = new JsonArray();
        int count = random.Next(1, 4);
        for (int i = 0; i < count; i++)
        {
            string role = i == count - 1 ? "user" : random.Next(2) == 0 ? "system" : "assistant";
            messages.Add(new JsonObject { ["role"] = role, ["content"] = random.Next(4) == 0 ? new JsonArray(new JsonObject { ["type"] = "text", ["text"] = Words(random) }) : Words(random) });
        }

        var request = new JsonObject { ["model"] = "tiny", ["messages"] = messages, ["max_tokens"] = random.Next(1, 8) };
        if (random.Next(3) == 0)
        {
            request["stream"] = true;
        }

        return request;
    }

    private static JsonObject ValidCompletion(Random random)
    {
        JsonNode prompt = random.Next(3) switch
        {
            0 => Words(random),
            1 => new JsonArray(Words(random), Words(random)),
            _ => new JsonArray([.. Enumerable.Range(0, random.Next(1, 12)).Select(_ => (JsonNode?)JsonValue.Create(random.Next(1, 500)))]),
        };
        var request = new JsonObject { ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = random.Next(1, 8) };
        if (random.Next(3) == 0)
        {
            request["stream"] = true;
        }

        return request;
    }

    private static string Words(Random random) =>
        string.Join(' ', Enumerable.Range(0, random.Next(1, 8)).Select(_ => new string((char)('a' + random.Next(26)), random.Next(1, 6))));

    private static string MutateStructure(Random random, JsonObject request)
    {
        switch (random.Next(6))
        {
            case 0:
            {
                string field = Fields[random.Next(Fields.Length)];
                request[field] = NastyValue(random);
                return $"set {field}";
            }

            case 1:
            {
                string[] present = [.. request.Select(p => p.Key)];
                string field = present[random.Next(present.Length)];
                request.Remove(field);
                return $"remove {field}";
            }

            case 2:
            {
                (JsonNode? parent, string where) = RandomContainer(random, request);
                if (parent is JsonObject o)
                {
                    string key = o.Count > 0 && random.Next(2) == 0 ? o.ElementAt(random.Next(o.Count)).Key : Fields[random.Next(Fields.Length)];
                    o[key] = NastyValue(random);
                    return $"set {where}.{key}";
                }

                var a = (JsonArray)parent!;
                if (a.Count > 0 && random.Next(2) == 0)
                {
                    int i = random.Next(a.Count);
                    a[i] = NastyValue(random);
                    return $"set {where}[{i}]";
                }

                a.Add(NastyValue(random));
                return $"append to {where}";
            }

            case 3:
            {
                string[] numeric = ["max_tokens", "n", "top_logprobs", "logprobs", "best_of", "top_k", "seed", "min_tokens", "max_completion_tokens"];
                string field = numeric[random.Next(numeric.Length)];
                request[field] = random.Next(4) switch
                {
                    0 => -random.Next(1, 1000),
                    1 => int.MinValue,
                    2 => long.MaxValue,
                    _ => JsonValue.Create(HugeNumber),
                };
                return $"number {field}";
            }

            case 4:
            {
                string field = random.Next(3) switch { 0 => "messages", 1 => "prompt", _ => "stop" };
                int size = random.Next(10) == 0 ? 20_000 : random.Next(100, 3000);
                request[field] = random.Next(3) switch
                {
                    0 => new JsonArray([.. Enumerable.Range(0, size).Select(i => (JsonNode?)JsonValue.Create(i))]),
                    1 => new JsonArray([.. Enumerable.Range(0, size / 10).Select(_ => (JsonNode?)new JsonObject { ["role"] = "user", ["content"] = "x" })]),
                    _ => new JsonArray([.. Enumerable.Range(0, size / 10).Select(i => (JsonNode?)JsonValue.Create($"s{i}"))]),
                };
                return $"huge array {field}";
            }

            default:
            {
                string[] unsupported = ["tools", "tool_choice", "functions", "function_call", "response_format", "logit_bias", "min_tokens", "best_of", "echo", "suffix"];
                string field = unsupported[random.Next(unsupported.Length)];
                request[field] = NastyValue(random);
                return $"unsupported {field}";
            }
        }
    }

    /// <summary>A random object or array inside <paramref name="root"/> (the root itself included), with its path.</summary>
    private static (JsonNode Container, string Path) RandomContainer(Random random, JsonObject root)
    {
        JsonNode node = root;
        string path = "$";
        for (int depth = 0; depth < 4 && random.Next(3) != 0; depth++)
        {
            JsonNode? child = node switch
            {
                JsonObject o when o.Count > 0 => o.ElementAt(random.Next(o.Count)).Value,
                JsonArray a when a.Count > 0 => a[random.Next(a.Count)],
                _ => null,
            };
            if (child is not (JsonObject or JsonArray))
            {
                break;
            }

            path += node is JsonObject ? $".{child.GetPropertyName()}" : "[]";
            node = child;
        }

        return (node, path);
    }

    private static JsonNode? NastyValue(Random random) => random.Next(24) switch
    {
        0 => null,
        1 => true,
        2 => 0,
        3 => -1,
        4 => 1e308,
        5 => -1e308,
        6 => 1e-320,
        7 => 3.5e38,
        8 => JsonValue.Create("NaN"),
        9 => JsonValue.Create(random.Next(2) == 0 ? "Infinity" : "-Infinity"),
        10 => JsonValue.Create(Nan),
        11 => JsonValue.Create(HugeNumber),
        12 => JsonValue.Create(""),
        13 => JsonValue.Create($"a{LoneHigh}b"),
        14 => JsonValue.Create($"{LoneLow}"),
        15 => JsonValue.Create("\u0000\u001f\u2028\ufeff\ud83d\ude00 \u202e"),
        16 => JsonValue.Create(new string('x', random.Next(1000, 100_000))),
        17 => new JsonObject(),
        18 => new JsonObject { ["type"] = "text", ["text"] = 5 },
        19 => JsonValue.Create(Deep),
        20 => new JsonArray(),
        21 => new JsonArray(null, 1, "two", new JsonArray(new JsonArray())),
        22 => 2147483648L,
        _ => JsonValue.Create("9223372036854775808"),
    };

    private static (byte[] Body, string What) MutateBytes(Random random, byte[] body)
    {
        switch (random.Next(8))
        {
            case 0:
                int cut = random.Next(body.Length);
                return (body[..cut], $"truncated at {cut}");
            case 1:
            {
                byte[][] invalid = [[0xC3, 0x28], [0xFF], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xF4, 0x90, 0x80, 0x80], [0x80], [0xE2, 0x82]];
                byte[] bad = invalid[random.Next(invalid.Length)];
                int at = random.Next(body.Length + 1);
                return ([.. body[..at], .. bad, .. body[at..]], $"invalid UTF-8 {Convert.ToHexString(bad)} at {at}");
            }

            case 2:
            {
                byte[] copy = [.. body];
                int at = random.Next(copy.Length);
                const string Replacements = "{}[]\",:\\ 0aZ-.e\n\t";
                copy[at] = (byte)Replacements[random.Next(Replacements.Length)];
                return (copy, $"byte {at} flipped");
            }

            case 3:
                return ([0xEF, 0xBB, 0xBF, .. body], "BOM");
            case 4:
            {
                byte[] garbage = new byte[random.Next(0, 64)];
                random.NextBytes(garbage);
                return (garbage, "random bytes");
            }

            case 5:
                return (random.Next(3) switch { 0 => [], 1 => " \n\t "u8.ToArray(), _ => "null"u8.ToArray() }, "empty-ish body");
            case 6:
            {
                int at = random.Next(body.Length);
                int length = Math.Min(random.Next(1, 40), body.Length - at);
                return ([.. body[..at], .. body.AsSpan(at, length), .. body[at..]], $"duplicated {length} bytes at {at}");
            }

            default:
                return ([.. Encoding.UTF8.GetBytes("[")!, .. body, .. Encoding.UTF8.GetBytes("]")], "wrapped in an array");
        }
    }
}
