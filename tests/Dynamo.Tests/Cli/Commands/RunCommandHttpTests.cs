using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using Dynamo.Tests.Frontend;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>`dynamo run` as a process: the HTTP server's API keys (flag, file, environment) and TLS flags.</summary>
public class RunCommandHttpTests
{
    [Fact]
    public async Task Run_ApiKeysFromFlagFileAndEnvironmentWithTls_HttpsNeedsAKeyAndNoKeyIsPrinted()
    {
        using TempCertificate tls = TempCertificate.Create();
        string keyFile = Path.Combine(tls.Directory, "keys.txt");
        await File.WriteAllTextAsync(keyFile, "file-secret-7\n");
        await using DynamoProcess run = DynamoProcess.Start(
            ["run", "out=echo", "--http-port", "0", "--http-host", "127.0.0.1", "--api-key", "flag-secret-7", "--api-key-file", keyFile,
             "--tls-cert-file", tls.CertificateFile, "--tls-key-file", tls.KeyFile],
            new Dictionary<string, string> { ["DYNAMO_API_KEY"] = "env-secret-7" });

        await run.WaitForLineAsync("run: OpenAI-compatible API on");
        Match line = Regex.Match(run.Output, @"run: OpenAI-compatible API on (https://127\.0\.0\.1:\d+/).*API key required \(3 keys");
        Assert.True(line.Success, run.Output);
        string address = line.Groups[1].Value;
        using HttpClient http = tls.TrustingClient(new Uri(address));

        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("v1/models")).StatusCode);
        foreach (string key in new[] { "flag-secret-7", "file-secret-7", "env-secret-7" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using HttpResponseMessage response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("live")).StatusCode);
        Assert.DoesNotContain("secret-7", run.Output, StringComparison.Ordinal);
    }
}
