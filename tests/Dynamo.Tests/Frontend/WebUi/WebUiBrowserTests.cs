using System.Text.Json.Nodes;

namespace Dynamo.Tests.Frontend.WebUi;

/// <summary>The web page in a real headless Chromium against `dynamo run` with a real engine and model: a chat round trip, the status view, a screenshot.</summary>
[Trait("Category", "Slow")]
public class WebUiBrowserTests
{
    private const int Width = 1280;
    private const int Height = 900;

    [Fact]
    public async Task Page_InHeadlessChromium_ChatRoundTripCompletesAndStatusShowsTheWorker()
    {
        HeadlessChromium.Executable();
        await using WebUiServer server = await WebUiServer.StartAsync();
        await using HeadlessChromium browser = await HeadlessChromium.StartAsync(Width, Height);

        await browser.SendAsync("Page.navigate", new JsonObject { ["url"] = server.Address.ToString() });
        await browser.WaitUntilAsync("document.querySelector('#model option[value=\"tiny-chat\"]') && Number(document.body.dataset.statusPolls) >= 1", "the model picker lists tiny-chat and the status was polled");
        Assert.Equal("chat", (await browser.EvaluateAsync("document.getElementById('mode').textContent"))?.GetValue<string>());

        await browser.EvaluateAsync("document.getElementById('max-tokens').value = '12'; document.getElementById('prompt').value = 'Hello there'; document.getElementById('send').click(); true");
        await browser.WaitUntilAsync("document.querySelector('#messages .assistant[data-done=\"1\"]')", "the answer finished");
        string answer = (await browser.EvaluateAsync("document.querySelector('#messages .assistant .text').textContent"))!.GetValue<string>();
        string stats = (await browser.EvaluateAsync("document.querySelector('#messages .assistant .stats').textContent"))!.GetValue<string>();
        bool error = (await browser.EvaluateAsync("document.querySelector('#messages .assistant').classList.contains('error')"))!.GetValue<bool>();
        Assert.False(error, answer);
        Assert.False(string.IsNullOrWhiteSpace(answer), stats);
        Assert.Matches(@"TTFT \d+\.\d{3} s", stats);
        Assert.Matches(@"\d+ tokens", stats);
        Assert.Equal("Hello there", (await browser.EvaluateAsync("document.querySelector('#messages .user .text').textContent"))?.GetValue<string>());

        // The status view: the worker's row shows the request routed to it and its load report.
        await browser.WaitUntilAsync("(() => { const r = document.querySelector('#workers tr.worker'); return r && r.cells[8].textContent === '1' && r.cells[3].textContent !== '–'; })()", "the worker row shows 1 routed request and a load report");
        Assert.Equal("aggregated", (await browser.EvaluateAsync("document.querySelector('#workers tr.worker').cells[1].textContent"))?.GetValue<string>());
        Assert.Equal("100%", (await browser.EvaluateAsync("document.querySelector('#workers tr.worker').cells[9].textContent"))?.GetValue<string>());
        await browser.WaitUntilAsync("document.querySelector('#chart-tps path') && document.querySelector('#chart-ttft path')", "both charts draw a line");

        // At 1280 px the worker table fits its panel (no sideways scrolling): with the real row, and with the same status
        // drawn again with a long model name and large counters.
        const string Widths = "(() => { const t = document.querySelector('#status .table-wrap'); return [t.scrollWidth, t.clientWidth]; })()";
        AssertFits(await browser.EvaluateAsync(Widths), "the worker's row");
        AssertFits(await browser.EvaluateAsync(
            "fetch('/v1/dynamo/status', { headers: headers(false), cache: 'no-store' }).then(r => r.json()).then(s => { for (const w of s.workers) { " +
            "w.model = 'nvidia/Llama-3.1-405B-Instruct-FP8'; w.routed_requests = 123456; w.kv_blocks_used = 17920; w.kv_blocks_total = 20480; w.tokens_per_second = 12345.6; } " +
            "renderStatus(s); return " + Widths + "; })"), "a long model name and large counters");

        byte[] png = await browser.ScreenshotAsync();
        await File.WriteAllBytesAsync(Path.Combine(Path.GetTempPath(), "dynamo-webui-test.png"), png); // to look at after a run
        PngImage shot = PngImage.Decode(png);
        Assert.Equal(Width, shot.Width);
        Assert.Equal(Height, shot.Height);
        Assert.Equal(((byte)0x1c, (byte)0x23, (byte)0x30), shot[4, 4]); // the header bar
        Assert.True(shot.DistinctColors() > 50, $"the screenshot looks blank: {shot.DistinctColors()} colors");
    }

    private static void AssertFits(JsonNode? widths, string what)
    {
        JsonArray pair = widths!.AsArray();
        int scroll = pair[0]!.GetValue<int>();
        int client = pair[1]!.GetValue<int>();
        Assert.True(scroll <= client, $"the worker table scrolls sideways at {Width} px with {what}: scrollWidth {scroll} > clientWidth {client}");
    }

    [Fact]
    public async Task Page_ModelWithoutChatTemplate_AnswersThroughCompletions()
    {
        HeadlessChromium.Executable();
        await using WebUiServer server = await WebUiServer.StartAsync(WebUiServer.NoTemplateModel.Value, "tiny-plain");
        await using HeadlessChromium browser = await HeadlessChromium.StartAsync(Width, Height);

        await browser.SendAsync("Page.navigate", new JsonObject { ["url"] = server.Address.ToString() });
        await browser.WaitUntilAsync("document.querySelector('#model option[value=\"tiny-plain\"]') && document.getElementById('mode').textContent.startsWith('completion')", "the page picks completion mode for a model without a chat template");

        await browser.EvaluateAsync("document.getElementById('max-tokens').value = '8'; document.getElementById('prompt').value = 'Once upon'; document.getElementById('send').click(); true");
        await browser.WaitUntilAsync("document.querySelector('#messages .assistant[data-done=\"1\"]')", "the answer finished");
        Assert.False((await browser.EvaluateAsync("document.querySelector('#messages .assistant').classList.contains('error')"))!.GetValue<bool>(),
            (await browser.EvaluateAsync("document.querySelector('#messages .assistant .text').textContent"))?.ToString());
        Assert.False(string.IsNullOrWhiteSpace((await browser.EvaluateAsync("document.querySelector('#messages .assistant .text').textContent"))!.GetValue<string>()));
        Assert.Matches(@"TTFT \d+\.\d{3} s", (await browser.EvaluateAsync("document.querySelector('#messages .assistant .stats').textContent"))!.GetValue<string>());
    }
}
