using System.Globalization;
using YamlDotNet.Serialization;

namespace Dynamo.Cli.Components;

/// <summary>
/// A serve config (`-f configs/FILE.yaml`): one section per component name with its settings, and a
/// `Common` section every component inherits (its own keys win), as the guides' configs. Keys are
/// matched with '-' and '_' as the same; `ServiceArgs: {workers: N}` starts N instances.
/// </summary>
internal sealed class ServeConfig
{
    private readonly Dictionary<string, Dictionary<string, object?>> _sections;

    private ServeConfig(string source, Dictionary<string, Dictionary<string, object?>> sections)
    {
        Source = source;
        _sections = sections;
    }

    public string Source { get; }

    public static ServeConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CliUsageException($"-f {path}: file not found");
        }

        Dictionary<string, Dictionary<string, object?>?>? raw;
        try
        {
            raw = new DeserializerBuilder().Build().Deserialize<Dictionary<string, Dictionary<string, object?>?>?>(File.ReadAllText(path));
        }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new CliUsageException($"{path}: not a serve config (Component: {{key: value}}): {e.Message}");
        }

        var sections = new Dictionary<string, Dictionary<string, object?>>(StringComparer.Ordinal);
        foreach (var (name, values) in raw ?? [])
        {
            sections[name] = (values ?? []).ToDictionary(kv => Normalize(kv.Key), kv => kv.Value, StringComparer.Ordinal);
        }

        return new ServeConfig(path, sections);
    }

    /// <summary>The settings of <paramref name="component"/>: Common first, then its own section over it.</summary>
    public ComponentConfig For(string component)
    {
        var merged = new Dictionary<string, object?>(StringComparer.Ordinal);
        var own = new HashSet<string>(StringComparer.Ordinal);
        foreach (string section in new[] { "Common", component })
        {
            if (_sections.TryGetValue(section, out Dictionary<string, object?>? values))
            {
                foreach (var (k, v) in values)
                {
                    merged[k] = v;
                    if (section == component)
                    {
                        own.Add(k);
                    }
                }
            }
        }

        merged.Remove("common_configs");
        own.Remove("common_configs");
        return new ComponentConfig(Source, component, merged, own);
    }

    internal static string Normalize(string key) => key.Replace('-', '_').ToLowerInvariant();
}

/// <summary>One component's merged settings; remembers which keys were read so the rest can be reported.</summary>
internal sealed class ComponentConfig(string source, string component, Dictionary<string, object?> values, IReadOnlySet<string> own)
{
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public string Component => component;

    public string? String(string key)
    {
        _read.Add(ServeConfig.Normalize(key));
        return values.TryGetValue(ServeConfig.Normalize(key), out object? v) ? v?.ToString() : null;
    }

    public int? Int(string key) => Parse(key, s => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));

    public long? Long(string key) => Parse(key, s => long.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture));

    public double? Double(string key) => Parse(key, s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture));

    public bool? Bool(string key) => Parse(key, s => s.ToLowerInvariant() switch
    {
        "true" or "yes" or "on" or "1" => true,
        "false" or "no" or "off" or "0" => false,
        _ => throw new FormatException(),
    });

    /// <summary>The nested ServiceArgs.workers count (1 when absent).</summary>
    public int Replicas()
    {
        _read.Add("serviceargs");
        if (values.TryGetValue("serviceargs", out object? v) && v is IDictionary<object, object> args)
        {
            foreach (var (k, value) in args)
            {
                if (ServeConfig.Normalize(k.ToString()!) == "workers")
                {
                    return int.TryParse(value?.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= 1
                        ? n : throw new CliUsageException($"{source}: {component}.ServiceArgs.workers: '{value}' must be a positive integer");
                }
            }
        }

        return 1;
    }

    /// <summary>
    /// Runs an options record's <c>Validate</c>: its <see cref="ArgumentException"/>, which names the flag,
    /// becomes a usage error that names this config file and section as well.
    /// </summary>
    public T Validated<T>(Func<T> validate)
    {
        try
        {
            return validate();
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException($"{source}: {component}: {CliErrors.Describe(e)}");
        }
    }

    /// <summary>The component's own keys (not Common's) that nothing read: reported at startup as accepted with no effect.</summary>
    public IEnumerable<string> Unused() => own.Where(k => !_read.Contains(k)).Order(StringComparer.Ordinal);

    private T? Parse<T>(string key, Func<string, T> parse)
        where T : struct
    {
        string? s = String(key);
        if (s is null)
        {
            return null;
        }

        try
        {
            return parse(s);
        }
        catch (FormatException)
        {
            throw new CliUsageException($"{source}: {component}.{key}: '{s}' is not a valid {typeof(T).Name.ToLowerInvariant()}");
        }
        catch (OverflowException)
        {
            throw new CliUsageException($"{source}: {component}.{key}: '{s}' is out of range");
        }
    }
}
