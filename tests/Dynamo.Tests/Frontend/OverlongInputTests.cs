using System.Text;
using System.Text.Json;
using Dynamo.Frontend;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// Input far over the context is refused before it is tokenized whole: a 400 context_length_exceeded, and
/// the process allocates a small multiple of the body rather than hundreds of megabytes. It measures the
/// whole process's allocations, so it runs alone.
/// </summary>
[Collection(TimingCollection.Name)]
public class OverlongInputTests
{
    private const int Body = 15 << 20;

    [Theory]
    [InlineData("/v1/chat/completions", false, false)]
    [InlineData("/v1/completions", false, false)]
    [InlineData("/v1/chat/completions", true, false)]
    [InlineData("/v1/chat/completions", false, true)]
    [InlineData("/v1/completions", false, true)]
    public async Task Message15MiB_400ContextLengthExceeded_AllocationsBounded(string path, bool parallel, bool processor)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MaxRequestBodyBytes = 16L << 20 }, processor: processor);
        await h.AddWorkerAsync(FrontendHarness.Echo(), contextLength: 4096);
        string text = LongText(Body - 200);
        byte[] body = Encoding.UTF8.GetBytes(path.Contains("chat", StringComparison.Ordinal)
            ? $$"""{"model":"tiny","messages":[{"role":"user","content":"{{text}}"}]}"""
            : $$"""{"model":"tiny","prompt":"{{text}}"}""");
        text = "";
        int requests = parallel ? 4 : 1;
        await SendAsync(h, path, body, 1); // warm up: first-request allocations are not the ones measured
        GC.Collect();
        long before = GC.GetTotalAllocatedBytes(precise: true);

        (int Status, string Code)[] results = await SendAsync(h, path, body, requests);

        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.All(results, r => Assert.Equal((400, "context_length_exceeded"), r));
        Assert.True(allocated < requests * 6L * body.Length, $"{allocated / 1048576.0:F1} MiB allocated for {requests} x {body.Length / 1048576.0:F1} MiB bodies");
    }

    private static Task<(int Status, string Code)[]> SendAsync(FrontendHarness h, string path, byte[] body, int count) =>
        Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
        {
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            using HttpResponseMessage response = await h.Http.PostAsync(path, content);
            using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return ((int)response.StatusCode, json.RootElement.GetProperty("error").GetProperty("code").GetString()!);
        }));

    /// <summary>Words and spaces, as a long document would be.</summary>
    private static string LongText(int length)
    {
        var text = new StringBuilder(length);
        var random = new Random(3);
        while (text.Length < length)
        {
            text.Append((char)('a' + random.Next(26)));
            if (random.Next(6) == 0)
            {
                text.Append(' ');
            }
        }

        return text.ToString(0, length);
    }
}
