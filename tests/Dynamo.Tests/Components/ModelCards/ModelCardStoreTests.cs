using Dynamo.Components.ModelCards;
using Dynamo.Llm.ModelCards;
using Dynamo.Runtime;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Components.ModelCards;

/// <summary>Model cards published and loaded through an in-process cluster.</summary>
public sealed class ModelCardStoreTests
{
    [Fact]
    public async Task LoadTokenizerAsync_SameCardManyTimesAtOnce_EveryLoadSucceedsWithTheSameTokenizer()
    {
        // A frontend and a processor in one process, or two models sharing a tokenizer, load one card at the
        // same moment into one cache: their temporary files must never collide.
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime worker = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        var address = new EndpointAddress("dynamo", "backend", "generate");
        ModelDeploymentCard card = await ModelCardStore.PublishAsync(worker, address, new ModelCardSource("tiny", "gguf", TestModels.Tiny.Value, 256, 16, 512));
        string cache = Path.Combine(Path.GetTempPath(), "dynamo-card-cache", Guid.NewGuid().ToString("N"));
        try
        {
            for (int round = 0; round < 50; round++)
            {
                // Every load finds the cache empty and writes the files, all at once.
                var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Task<TokenizerBundle>[] loads = [.. Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
                {
                    await start.Task;
                    return await ModelCardStore.LoadTokenizerAsync(card, frontend.Blobs, cache);
                }))];
                start.SetResult();
                TokenizerBundle[] bundles = await Task.WhenAll(loads);
                int[] expected = bundles[0].Tokenizer.Encode("Hello world", true).ToArray();
                Assert.All(bundles, b => Assert.Equal(expected, b.Tokenizer.Encode("Hello world", true)));
                Assert.Empty(Directory.GetFiles(cache, "*.tmp*", SearchOption.AllDirectories));
                Directory.Delete(cache, recursive: true);
            }
        }
        finally
        {
            if (Directory.Exists(cache))
            {
                Directory.Delete(cache, recursive: true);
            }
        }
    }
}
