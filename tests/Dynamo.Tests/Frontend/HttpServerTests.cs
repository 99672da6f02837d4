using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Dynamo.Frontend;
using OpenAI;
using OpenAI.Chat;

namespace Dynamo.Tests.Frontend;

/// <summary>The HTTP server around the routes: error bodies for what is refused before a route runs, limits, API keys, TLS.</summary>
public class HttpServerTests
{
    private const string Chat = "/v1/chat/completions";
    private const string Completions = "/v1/completions";
    private const string Ok = """{"model":"tiny","prompt":"x","max_tokens":1}""";

    [Theory]
    [InlineData("GET", Chat, 405, "method_not_allowed", "POST")]
    [InlineData("PUT", Completions, 405, "method_not_allowed", "POST")]
    [InlineData("DELETE", "/v1/models", 405, "method_not_allowed", "GET")]
    [InlineData("POST", "/health", 405, "method_not_allowed", "GET")]
    [InlineData("GET", "/v1/embeddings", 404, "unknown_route", null)]
    public async Task Routes_WrongMethodOrUnknown_OpenAiErrorWithStatus(string method, string path, int status, string code, string? allow)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();

        RawHttp.Response response = await RawHttp.SendAsync(h.Server.BaseAddress, $"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");

        Assert.Equal(status, response.Status);
        Assert.Equal(code, response.Error().GetProperty("code").GetString());
        Assert.Equal(allow, response.Headers.TryGetValue("allow", out string? a) ? a : null);
    }

    [Theory]
    [InlineData("application/xml", 415)]
    [InlineData("multipart/form-data; boundary=x", 415)]
    [InlineData("application/json; charset=utf-16", 415)]
    [InlineData("image/png", 415)]
    [InlineData("application/json", 200)]
    [InlineData("application/json; charset=UTF-8", 200)]
    [InlineData("application/vnd.api+json", 200)]
    [InlineData("text/plain; charset=utf-8", 200)]
    [InlineData("application/x-www-form-urlencoded", 200)]
    public async Task ContentType_NotJsonText_415OpenAiError(string contentType, int status)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(Ok));
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);

        using HttpResponseMessage response = await h.Http.PostAsync(Completions, content);

        Assert.Equal(status, (int)response.StatusCode);
        if (status != 200)
        {
            JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("unsupported_media_type", error.GetProperty("code").GetString());
        }
    }

    [Fact]
    public async Task Body_MalformedChunkingOrOverTheLimit_OpenAiErrorFromTheApp()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MaxRequestBodyBytes = 4096 });
        await h.AddWorkerAsync(FrontendHarness.Echo());

        RawHttp.Response chunked = await RawHttp.SendAsync(h.Server.BaseAddress, $"POST {Completions} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{Ok}\r\n0\r\n\r\n");
        RawHttp.Response large = await RawHttp.SendAsync(h.Server.BaseAddress, $"POST {Completions} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");

        Assert.Equal(400, chunked.Status);
        Assert.Equal("bad_request", chunked.Error().GetProperty("code").GetString());
        Assert.Equal(413, large.Status);
        Assert.Equal("request_too_large", large.Error().GetProperty("code").GetString());
    }

    [Fact]
    public async Task Limits_HeaderSizeCountRequestLineOrMalformedLength_KestrelsStatusWithAnOpenAiError()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MaxRequestHeaderBytes = 2048, MaxRequestHeaderCount = 10, MaxRequestLineBytes = 512 });
        await h.AddWorkerAsync(FrontendHarness.Echo());
        string post = $"POST {Completions} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {Ok.Length}\r\n";

        RawHttp.Response fits = await RawHttp.SendAsync(h.Server.BaseAddress, $"{post}X-Pad: {new string('a', 1500)}\r\n\r\n{Ok}");
        RawHttp.Response bigHeader = await RawHttp.SendAsync(h.Server.BaseAddress, $"{post}X-Pad: {new string('a', 3000)}\r\n\r\n{Ok}");
        RawHttp.Response manyHeaders = await RawHttp.SendAsync(h.Server.BaseAddress, post + string.Concat(Enumerable.Range(0, 12).Select(i => $"X-H{i}: v\r\n")) + "\r\n" + Ok);
        RawHttp.Response longLine = await RawHttp.SendAsync(h.Server.BaseAddress, $"GET /v1/models?q={new string('a', 600)} HTTP/1.1\r\nHost: x\r\n\r\n");
        RawHttp.Response badLength = await RawHttp.SendAsync(h.Server.BaseAddress, $"POST {Completions} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{Ok}");
        RawHttp.Response badLine = await RawHttp.SendAsync(h.Server.BaseAddress, "GET /v1/models HTTP/1.1 extra\r\nHost: x\r\n\r\n");

        Assert.Equal((200, 431, 431, 414, 400, 400), (fits.Status, bigHeader.Status, manyHeaders.Status, longLine.Status, badLength.Status, badLine.Status));
        foreach ((RawHttp.Response refused, string code, string message) in new[]
        {
            (bigHeader, "request_header_fields_too_large", "Request headers too long"),
            (manyHeaders, "request_header_fields_too_large", "too many headers"),
            (longLine, "uri_too_long", "Request line too long"),
            (badLength, "bad_request", "Invalid content length"),
            (badLine, "bad_request", "Invalid request line"),
        })
        {
            JsonElement error = refused.Error();
            Assert.Equal(code, error.GetProperty("code").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Contains(message, error.GetProperty("message").GetString(), StringComparison.OrdinalIgnoreCase);
            Assert.Equal("close", refused.Headers["connection"]);
        }
    }

    [Fact]
    public async Task Limits_RefusalAfterAnAnswerOnTheSameConnection_FirstAnswerIntactThenOpenAiErrorThenClosed()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MaxRequestHeaderBytes = 2048 });
        using RawHttp connection = await RawHttp.ConnectAsync(h.Server.BaseAddress);

        await connection.WriteAsync("GET /live HTTP/1.1\r\nHost: x\r\n\r\n");
        RawHttp.Response live = await connection.ReadResponseAsync();
        await connection.WriteAsync($"GET /live HTTP/1.1\r\nHost: x\r\nX-Pad: {new string('a', 3000)}\r\n\r\n");
        RawHttp.Response refused = await connection.ReadResponseAsync();
        using var closed = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        Assert.Equal((200, "{\"status\":\"live\"}"), (live.Status, live.Body));
        Assert.Equal(431, refused.Status);
        Assert.Equal("request_header_fields_too_large", refused.Error().GetProperty("code").GetString());
        Assert.True(await connection.ClosedByServerAsync(closed.Token));
    }

    [Fact]
    public async Task ApiKeys_MissingOrWrong401_RightKeyFromListOrFile200_HealthAndLiveOpen()
    {
        string file = Path.Combine(Path.GetTempPath(), $"dynamo-keys-{Guid.NewGuid():N}.txt");
        await File.WriteAllTextAsync(file, "# keys\n\n  file-key-1  \nfile-key-2\n");
        try
        {
            await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { ApiKeys = ["list-key"], ApiKeyFile = file });
            await h.AddWorkerAsync(FrontendHarness.Echo());
            Assert.Equal(3, h.Server.ApiKeyCount);
            Assert.DoesNotContain("key", h.Server.AccessNote.Replace("API key", "", StringComparison.Ordinal).Replace("keys", "", StringComparison.Ordinal), StringComparison.Ordinal);

            foreach (string? authorization in new[] { null, "Bearer nope", "Bearer list-key2", "Basic list-key", "Bearer ", "list-key" })
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, Completions) { Content = new StringContent(Ok, Encoding.UTF8, "application/json") };
                if (authorization is not null)
                {
                    request.Headers.TryAddWithoutValidation("Authorization", authorization);
                }

                using HttpResponseMessage refused = await h.Http.SendAsync(request);
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
                Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
                JsonElement error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
                Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
                Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
            }

            foreach (string key in new[] { "list-key", "file-key-1", "file-key-2" })
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, Completions) { Content = new StringContent(Ok, Encoding.UTF8, "application/json") };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                using HttpResponseMessage accepted = await h.Http.SendAsync(request);
                Assert.Equal(HttpStatusCode.OK, accepted.StatusCode);
            }

            Assert.Equal(HttpStatusCode.OK, (await h.Http.GetAsync("/health")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await h.Http.GetAsync("/live")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await h.Http.GetAsync("/metrics")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await h.Http.GetAsync("/v1/models")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await h.Http.GetAsync("/v1/unknown")).StatusCode);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task ApiKeys_MetricsRequireApiKey_MetricsNeedsOneHealthStillOpen()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { ApiKeys = ["k"], MetricsRequireApiKey = true });

        using var withKey = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        withKey.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "k");

        Assert.Equal(HttpStatusCode.Unauthorized, (await h.Http.GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await h.Http.SendAsync(withKey)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await h.Http.GetAsync("/live")).StatusCode);
    }

    [Fact]
    public async Task ApiKeys_OpenAiDotNetClient_SendsItsCredential()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { ApiKeys = ["sdk-key"] });
        await h.AddWorkerAsync(FrontendHarness.Echo());
        var right = new ChatClient("tiny", new ApiKeyCredential("sdk-key"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") });
        var wrong = new ChatClient("tiny", new ApiKeyCredential("other-key"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") });

        ChatCompletion answer = (await right.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 })).Value;
        ClientResultException refused = await Assert.ThrowsAsync<ClientResultException>(() => wrong.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(ChatFinishReason.Length, answer.FinishReason);
        Assert.Equal(401, refused.Status);
    }

    [Fact]
    public void Options_BadLimitsKeysOrTls_MessageNamesTheFlag()
    {
        string Message(FrontendOptions o) => Assert.Throws<ArgumentException>(() => o.Validate()).Message;

        Assert.StartsWith("--max-request-header-bytes:", Message(FrontendOptions.Default with { MaxRequestHeaderBytes = 10 }));
        Assert.StartsWith("--max-request-headers:", Message(FrontendOptions.Default with { MaxRequestHeaderCount = 0 }));
        Assert.StartsWith("--max-request-line-bytes:", Message(FrontendOptions.Default with { MaxRequestLineBytes = 0 }));
        Assert.StartsWith("--request-headers-timeout:", Message(FrontendOptions.Default with { RequestHeadersTimeout = TimeSpan.Zero }));
        Assert.StartsWith("--min-request-body-rate:", Message(FrontendOptions.Default with { MinRequestBodyBytesPerSecond = double.NaN }));
        Assert.StartsWith("--min-request-body-rate-grace:", Message(FrontendOptions.Default with { MinRequestBodyRateGracePeriod = TimeSpan.FromSeconds(1) }));
        Assert.StartsWith("--api-key:", Message(FrontendOptions.Default with { ApiKeys = ["has space"] }));
        Assert.StartsWith("--api-key-file:", Message(FrontendOptions.Default with { ApiKeyFile = "/nonexistent/keys" }));
        Assert.StartsWith("--metrics-require-api-key:", Message(FrontendOptions.Default with { MetricsRequireApiKey = true }));
        Assert.StartsWith("--tls-key-file:", Message(FrontendOptions.Default with { TlsCertificateFile = "/nonexistent/cert.pem" }));
        Assert.StartsWith("--tls-cert-file:", Message(FrontendOptions.Default with { TlsCertificateFile = "/nonexistent/cert.pem", TlsKeyFile = "/nonexistent/key.pem" }));
        string empty = Path.GetTempFileName();
        try
        {
            Assert.StartsWith("--api-key-file:", Message(FrontendOptions.Default with { ApiKeyFile = empty }));
            Assert.StartsWith("--tls-cert-file:", Message(FrontendOptions.Default with { TlsCertificateFile = empty, TlsKeyFile = empty }));
        }
        finally
        {
            File.Delete(empty);
        }
    }

    [Fact]
    public async Task Tls_Http11HeadersOverTheLimit_431OpenAiError()
    {
        using TempCertificate tls = TempCertificate.Create();
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { TlsCertificateFile = tls.CertificateFile, TlsKeyFile = tls.KeyFile, MaxRequestHeaderBytes = 2048 });
        using HttpClient https = tls.TrustingClient(h.Server.BaseAddress);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Headers.Add("X-Pad", new string('a', 3000));

        using HttpResponseMessage response = await https.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("request_header_fields_too_large", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Tls_SelfSignedPemFiles_HttpsWithAClientTrustingThatCertificate()
    {
        using TempCertificate tls = TempCertificate.Create();
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { TlsCertificateFile = tls.CertificateFile, TlsKeyFile = tls.KeyFile });
        await h.AddWorkerAsync(FrontendHarness.Echo());
        using HttpClient https = tls.TrustingClient(h.Server.BaseAddress);
        using var untrusting = new HttpClient { BaseAddress = h.Server.BaseAddress };

        using HttpResponseMessage response = await https.PostAsync(Chat, new StringContent("""{"model":"tiny","messages":[{"role":"user","content":"over tls"}],"max_tokens":3}""", Encoding.UTF8, "application/json"));

        using var http2 = new HttpRequestMessage(HttpMethod.Post, Chat)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent("""{"model":"tiny","messages":[{"role":"user","content":"h2"}],"max_tokens":3,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage streamed = await https.SendAsync(http2, HttpCompletionOption.ResponseHeadersRead);
        Sse sse = await Sse.ReadAsync(streamed);

        Assert.Equal(HttpVersion.Version20, streamed.Version);
        Assert.Equal("length", sse.Events()[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal("https", h.Server.BaseAddress.Scheme);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync("/live"));
        RawHttp.Response plain = await RawHttp.SendAsync(h.Server.BaseAddress, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.NotEqual(200, plain.Status);
    }
}
