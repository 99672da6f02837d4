using Dynamo.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace Dynamo.Tests.Deploy;

/// <summary>
/// The guides' `docker compose -f FILE up -d` on the head node, for each FILE they name: what Compose would start,
/// read as Compose reads it (top-level `include:` resolved relative to the including file, an included service
/// defined twice being an error). Docker cannot run containers here, so the services' images, ports and commands
/// are checked instead; the guide walks (Integration/GuideWalkTests) run the same servers natively on these ports.
/// </summary>
public sealed class ComposeFilesTests
{
    public static TheoryData<string> HeadNodeFiles => new()
    {
        "deploy/docker-compose.yml",          // guides 000, 001, 003
        "deploy/metrics/docker-compose.yml",  // guide 002 ("we set up the NATS and ETCD servers on the head node")
        "lib/runtime/docker-compose.yml",     // guide 004
    };

    [Theory]
    [MemberData(nameof(HeadNodeFiles))]
    public void Services_GuideFile_StartsNatsWithJetStreamAndEtcdOnTheirStandardPorts(string file)
    {
        Dictionary<string, (YamlMappingNode Service, string DefinedIn)> services = Resolve(Path.Combine(RepoPaths.Root, file));

        YamlMappingNode nats = services["nats-server"].Service;
        Assert.StartsWith("nats:", Scalar(nats, "image"), StringComparison.Ordinal);
        Assert.Contains("-js", Sequence(nats, "command"));
        Assert.Contains("4222:4222", Sequence(nats, "ports"));

        YamlMappingNode etcd = services["etcd-server"].Service;
        Assert.StartsWith("quay.io/coreos/etcd:", Scalar(etcd, "image"), StringComparison.Ordinal);
        string[] command = Sequence(etcd, "command");
        Assert.Equal("etcd", command[0]);
        // Reachable from the other nodes: clients on every interface of the container, published on the host's 2379.
        Assert.Contains("--listen-client-urls=http://0.0.0.0:2379", command);
        Assert.Contains("2379:2379", Sequence(etcd, "ports"));
        Assert.Contains(command, a => a.StartsWith("--data-dir=", StringComparison.Ordinal));

        // One definition: both come from deploy/docker-compose.yml, whichever file the guide names.
        Assert.Equal(Path.Combine(RepoPaths.Root, "deploy", "docker-compose.yml"), services["nats-server"].DefinedIn);
        Assert.Equal(Path.Combine(RepoPaths.Root, "deploy", "docker-compose.yml"), services["etcd-server"].DefinedIn);
    }

    [Fact]
    public void Services_MetricsFile_AddsPrometheusAndGrafanaToNatsAndEtcd()
    {
        Dictionary<string, (YamlMappingNode Service, string DefinedIn)> services = Resolve(Path.Combine(RepoPaths.Root, "deploy", "metrics", "docker-compose.yml"));

        Assert.Equal(["etcd-server", "grafana", "nats-server", "prometheus"], services.Keys.Order(StringComparer.Ordinal));
        Assert.Contains("9090:9090", Sequence(services["prometheus"].Service, "ports"));
        Assert.Contains("3000:3000", Sequence(services["grafana"].Service, "ports"));
    }

    [Fact]
    public void Services_RuntimeFile_IsNatsAndEtcdAlone()
    {
        Dictionary<string, (YamlMappingNode Service, string DefinedIn)> services = Resolve(Path.Combine(RepoPaths.Root, "lib", "runtime", "docker-compose.yml"));

        Assert.Equal(["etcd-server", "nats-server"], services.Keys.Order(StringComparer.Ordinal));
    }

    /// <summary>The services Compose would start for <paramref name="file"/>, each with the file that defines it.</summary>
    internal static Dictionary<string, (YamlMappingNode Service, string DefinedIn)> Resolve(string file)
    {
        Assert.True(File.Exists(file), $"{file} does not exist");
        var stream = new YamlStream();
        using (var reader = new StreamReader(file))
        {
            stream.Load(reader);
        }

        var root = (YamlMappingNode)stream.Documents.Single().RootNode;
        var services = new Dictionary<string, (YamlMappingNode, string)>(StringComparer.Ordinal);
        if (root.Children.TryGetValue(new YamlScalarNode("include"), out YamlNode? include))
        {
            foreach (YamlNode entry in ((YamlSequenceNode)include).Children)
            {
                // `- path` or `- path: ...` (Compose's long form).
                string relative = entry is YamlMappingNode m ? Scalar(m, "path") : ((YamlScalarNode)entry).Value!;
                string included = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, relative));
                foreach (var (name, service) in Resolve(included))
                {
                    Assert.True(services.TryAdd(name, service), $"{file}: service {name} is included twice");
                }
            }
        }

        if (root.Children.TryGetValue(new YamlScalarNode("services"), out YamlNode? own))
        {
            foreach (var (name, service) in ((YamlMappingNode)own).Children)
            {
                // Compose refuses a service that an included file defines too.
                Assert.True(services.TryAdd(((YamlScalarNode)name).Value!, ((YamlMappingNode)service, file)), $"{file}: service {name} is also defined by an included file");
            }
        }

        return services;
    }

    private static string Scalar(YamlMappingNode map, string key) => ((YamlScalarNode)map.Children[new YamlScalarNode(key)]).Value!;

    private static string[] Sequence(YamlMappingNode map, string key) =>
        [.. ((YamlSequenceNode)map.Children[new YamlScalarNode(key)]).Children.Select(n => ((YamlScalarNode)n).Value!)];
}
