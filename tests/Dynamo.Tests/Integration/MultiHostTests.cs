using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// The guides' topology on one machine: NATS and etcd on a head node (h1), a worker on h2, clients on h3,
/// each a network namespace with its own 10.x address; nothing of ours runs in the root namespace.
/// </summary>
[Trait("Category", "Slow")]
public sealed class MultiHostTests
{
    [Fact]
    public async Task HeadNodeWorkerNodeClientNode_ServeAcrossHosts_AndHealAfterLinkCut()
    {
        using NetworkNamespaces net = NetworkNamespaces.Create(3);
        await using HeadNode head = await HeadNode.StartAsync(net);
        Dictionary<string, string> env = head.Environment;
        await using (DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--model", TestModels.Tiny.Value, "--kv-cache-memory", "16000000", "--threads", "1", "--lease-ttl", "3"], env, net.Host(2)))
        {
            await worker.WaitForLineAsync("serving dynamo.backend.generate");
            string first = await CallAsync(net, env, "Hello");
            Assert.NotEmpty(first.Trim());

            net.Cut(2);
            await Task.Delay(TimeSpan.FromSeconds(5));
            net.Heal(2);

            // The worker's lease expired during the cut; it re-registers and serves again.
            string? again = null;
            var until = DateTime.UtcNow.AddSeconds(40);
            while (again is null)
            {
                await using DynamoProcess call = DynamoProcess.Start(["call", "dynamo.backend.generate", "--prompt", "Hello", "--max-tokens", "8", "--wait", "5"], env, net.Host(3));
                int code = await call.WaitForExitAsync(60);
                if (code == 0)
                {
                    again = call.Stdout;
                }
                else
                {
                    Assert.True(DateTime.UtcNow < until, $"not healed within 40 s: {call.Output}\nworker:\n{worker.Output}");
                    await Task.Delay(500);
                }
            }

            Assert.Equal(first, again);
            worker.Terminate();
            Assert.Equal(0, await worker.WaitForExitAsync());
        }
    }

    private static async Task<string> CallAsync(NetworkNamespaces net, Dictionary<string, string> env, string prompt)
    {
        await using DynamoProcess call = DynamoProcess.Start(["call", "dynamo.backend.generate", "--prompt", prompt, "--max-tokens", "8"], env, net.Host(3));
        int code = await call.WaitForExitAsync(60);
        Assert.True(code == 0, call.Output);
        return call.Stdout;
    }
}
