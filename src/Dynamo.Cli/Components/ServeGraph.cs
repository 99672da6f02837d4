using YamlDotNet.Serialization;

namespace Dynamo.Cli.Components;

/// <summary>
/// A deployment graph for `dynamo serve MODULE:Component`: MODULE (dots -> folders) names a YAML file
/// (`graphs.agg_router` -> graphs/agg_router.yaml) mapping each component to the components it links to,
/// as `Frontend.link(Processor).link(Router).link(VllmWorker)` in the guides' Python graphs. Components
/// not defined in that file are looked up in the other YAML files of the same folder and of a sibling
/// `components/` folder, so `components.prefill_worker:PrefillWorker` works too.
/// </summary>
internal sealed class ServeGraph
{
    private readonly Dictionary<string, IReadOnlyList<string>> _links;

    private ServeGraph(string source, Dictionary<string, IReadOnlyList<string>> links)
    {
        Source = source;
        _links = links;
    }

    public string Source { get; }

    /// <summary>Finds MODULE's file relative to <paramref name="baseDirectories"/> (first hit) and loads it with its catalog.</summary>
    public static ServeGraph Load(string module, IEnumerable<string> baseDirectories)
    {
        string relative = module.Replace('.', Path.DirectorySeparatorChar) + ".yaml";
        string? path = baseDirectories.Select(d => Path.Combine(d, relative)).FirstOrDefault(File.Exists);
        if (path is null)
        {
            throw new CliUsageException($"graph '{module}': {relative} not found (looked in {string.Join(", ", baseDirectories)})");
        }

        var links = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var catalog = Directory.EnumerateFiles(dir, "*.yaml").Order(StringComparer.Ordinal).ToList();
        string siblingComponents = Path.Combine(Path.GetDirectoryName(dir)!, "components");
        if (Directory.Exists(siblingComponents) && Path.GetFullPath(siblingComponents) != dir)
        {
            catalog.AddRange(Directory.EnumerateFiles(siblingComponents, "*.yaml").Order(StringComparer.Ordinal));
        }

        // The graph's own file wins; the catalog fills in what it does not define.
        foreach (string file in catalog.Where(f => f != Path.GetFullPath(path)).Prepend(Path.GetFullPath(path)))
        {
            foreach (var (name, targets) in Read(file))
            {
                links.TryAdd(name, targets);
            }
        }

        return new ServeGraph(path, links);
    }

    /// <summary><paramref name="root"/> and everything it links to, transitively, roots first.</summary>
    public IReadOnlyList<string> Closure(string root)
    {
        if (!_links.ContainsKey(root))
        {
            throw new CliUsageException($"{Source}: no component '{root}' (defined: {string.Join(", ", _links.Keys.Order(StringComparer.Ordinal))})");
        }

        var order = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>([root]);
        while (queue.Count > 0)
        {
            string name = queue.Dequeue();
            if (!seen.Add(name))
            {
                continue;
            }

            order.Add(name);
            foreach (string next in _links.TryGetValue(name, out IReadOnlyList<string>? targets) ? targets : throw new CliUsageException($"{Source}: '{name}' is linked to but defined nowhere"))
            {
                queue.Enqueue(next);
            }
        }

        return order;
    }

    private static Dictionary<string, IReadOnlyList<string>> Read(string file)
    {
        Dictionary<string, List<string>?>? map;
        try
        {
            map = new DeserializerBuilder().Build().Deserialize<Dictionary<string, List<string>?>?>(File.ReadAllText(file));
        }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new CliUsageException($"{file}: not a graph (component: [linked components]): {e.Message}");
        }

        return (map ?? []).ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)(kv.Value ?? []), StringComparer.Ordinal);
    }
}
