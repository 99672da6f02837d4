using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Dynamo.Components.ModelCards;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.Tokenizers;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo call ENDPOINT</c>: sends one request to an endpoint through etcd and NATS and prints the
/// responses, one per line (raw mode, <c>--data</c>), or with <c>--prompt</c> tokenizes the text with
/// the tokenizer from the endpoint's model card (no model files needed here) and prints the generated
/// text. A debugging tool, like <c>nats req</c> for Dynamo endpoints.
/// </summary>
internal static class CallCommand
{
    public static Command Create()
    {
        var endpoint = new Argument<string>("endpoint") { Description = "namespace.component.endpoint, e.g. dynamo.backend.generate" };
        var data = new Option<string?>("--data", "-d") { Description = "The raw request payload (JSON for generate endpoints)" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Generate from this text, tokenized with the model card's tokenizer" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "With --prompt: tokens to generate", DefaultValueFactory = _ => 32 };
        var instance = new Option<string?>("--instance") { Description = "Send to this instance id (hex) instead of any" };
        var wait = new Option<double>("--wait") { Description = "Seconds to wait for an instance to appear", DefaultValueFactory = _ => 10 };
        var command = new Command("call", "Send one request to an endpoint over etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS) and print the responses")
        {
            endpoint, data, prompt, maxTokens, instance, wait,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            EndpointAddress address = EndpointAddress.Parse(parse.GetValue(endpoint)!);
            string? raw = parse.GetValue(data);
            string? text = parse.GetValue(prompt);
            if ((raw is null) == (text is null))
            {
                throw new CliUsageException("give exactly one of --data and --prompt");
            }

            long? pinned = parse.GetValue(instance) is string hex
                ? long.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long id) ? id : throw new CliUsageException($"--instance: '{hex}' is not a hex instance id")
                : null;
            return RunAsync(address, raw, text, parse.GetValue(maxTokens), pinned, TimeSpan.FromSeconds(parse.GetValue(wait)), RuntimeConnection.FromEnvironment(), cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(EndpointAddress address, string? raw, string? text, int maxTokens, long? instance, TimeSpan wait, RuntimeOptions runtimeOptions, CancellationToken cancellationToken)
    {
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, shutdown.Token);
        await using EndpointClient client = await runtime.CreateClientAsync(address, cancellationToken: shutdown.Token);
        try
        {
            await client.WaitForInstancesAsync(1, shutdown.Token).WaitAsync(wait, shutdown.Token);
        }
        catch (TimeoutException)
        {
            throw new CliUsageException($"no instance of {address} appeared in discovery ({runtime.Discovery.Address}) within {wait.TotalSeconds:0.#} s");
        }

        ITokenizer? tokenizer = null;
        byte[] payload;
        if (text is not null)
        {
            var cards = await ModelCardStore.ListAsync(runtime.Discovery, address.ModelCardsPrefix, shutdown.Token);
            ModelDeploymentCard card = cards.Count > 0 ? cards[0].Card : throw new CliUsageException($"{address} has no model card: use --data with token ids");
            string cache = Path.Combine(Path.GetTempPath(), "dynamo-model-cards");
            tokenizer = (await ModelCardStore.LoadTokenizerAsync(card, runtime.Blobs, cache, shutdown.Token)).Tokenizer;
            IReadOnlyList<int> ids = tokenizer.Encode(text, addSpecialTokens: true);
            payload = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
                $"{{\"version\":1,\"token_ids\":[{string.Join(',', ids)}],\"sampling\":{{\"temperature\":0,\"max_tokens\":{maxTokens}}}}}"));
        }
        else
        {
            payload = Encoding.UTF8.GetBytes(raw!);
        }

        var detokenizer = tokenizer is null ? null : new IncrementalDetokenizer(tokenizer, skipSpecialTokens: true);
        using Stream stdout = Console.OpenStandardOutput();
        using var writer = new StreamWriter(stdout, new UTF8Encoding(false));
        try
        {
            await foreach (ReadOnlyMemory<byte> response in client.StreamAsync(payload, instance, cancellationToken: shutdown.Token))
            {
                if (detokenizer is null)
                {
                    writer.WriteLine(Encoding.UTF8.GetString(response.Span));
                }
                else
                {
                    using JsonDocument doc = JsonDocument.Parse(response);
                    foreach (JsonElement id in doc.RootElement.GetProperty("token_ids").EnumerateArray())
                    {
                        writer.Write(detokenizer.Push(id.GetInt32()));
                    }
                }

                writer.Flush();
            }

            if (detokenizer is not null)
            {
                writer.WriteLine(detokenizer.Flush());
            }
        }
        catch (RequestPlaneException e)
        {
            writer.Flush();
            Console.Error.WriteLine($"error: {e.Code}: {e.Message}");
            return 1;
        }

        return 0;
    }
}
