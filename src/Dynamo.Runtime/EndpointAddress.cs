using System.Globalization;

namespace Dynamo.Runtime;

/// <summary>
/// namespace / component / endpoint, as in the design the guides come from. Each name is 1..64 of
/// [A-Za-z0-9_-] so it can be a discovery key segment and a NATS subject token as is.
/// </summary>
public sealed record EndpointAddress
{
    /// <summary>The discovery prefix of every instance record: <c>v1/instances/</c>.</summary>
    public const string InstancesRoot = "v1/instances/";

    /// <summary>The discovery prefix of every model card: <c>v1/mdc/</c>.</summary>
    public const string ModelCardsRoot = "v1/mdc/";

    /// <summary>Creates an address; throws <see cref="ArgumentException"/> naming a bad part.</summary>
    public EndpointAddress(string @namespace, string component, string endpoint)
    {
        Namespace = Check(@namespace, "namespace");
        Component = Check(component, "component");
        Endpoint = Check(endpoint, "endpoint");
    }

    /// <summary>The namespace ("dynamo" by default in the guides).</summary>
    public string Namespace { get; }

    /// <summary>The component ("backend", "prefill", "router", ...).</summary>
    public string Component { get; }

    /// <summary>The endpoint ("generate", ...).</summary>
    public string Endpoint { get; }

    /// <summary><c>v1/instances/{ns}/{comp}/{ep}/</c>: where the instances of this endpoint register.</summary>
    public string InstancesPrefix => $"{InstancesRoot}{Namespace}/{Component}/{Endpoint}/";

    /// <summary><c>v1/mdc/{ns}/{comp}/{ep}/</c>: where their model cards are.</summary>
    public string ModelCardsPrefix => $"{ModelCardsRoot}{Namespace}/{Component}/{Endpoint}/";

    /// <summary>The NATS subject that reaches any one instance (queue group): <c>dyn.{ns}.{comp}.{ep}</c>.</summary>
    public string AnyInstanceSubject => $"dyn.{Namespace}.{Component}.{Endpoint}";

    /// <summary>Parses "ns.comp.ep" or "ns/comp/ep".</summary>
    public static EndpointAddress Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        string[] parts = value.Split(value.Contains('/') ? '/' : '.');
        if (parts.Length != 3)
        {
            throw new ArgumentException($"'{value}' is not an endpoint address: expected namespace.component.endpoint");
        }

        return new EndpointAddress(parts[0], parts[1], parts[2]);
    }

    /// <summary>The instance's key: <c>v1/instances/{ns}/{comp}/{ep}/{id:x}</c>.</summary>
    public string InstanceKey(long instanceId) => InstancesPrefix + FormatId(instanceId);

    /// <summary>The instance's model-card key: <c>v1/mdc/{ns}/{comp}/{ep}/{id:x}</c>.</summary>
    public string ModelCardKey(long instanceId) => ModelCardsPrefix + FormatId(instanceId);

    /// <summary>The NATS subject of one instance: <c>dyn.{ns}.{comp}.{ep}.{id:x}</c>.</summary>
    public string InstanceSubject(long instanceId) => $"{AnyInstanceSubject}.{FormatId(instanceId)}";

    /// <summary>The subject of a component's events on the event plane: <c>dyn.{ns}.{comp}.events.{topic}</c>.</summary>
    public string EventSubject(string topic) => $"dyn.{Namespace}.{Component}.events.{Check(topic, "topic")}";

    /// <summary>Lower-case hex without leading zeros, as the original system writes instance ids.</summary>
    public static string FormatId(long instanceId) => instanceId.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>The instance id at the end of an instance or model-card key, or null.</summary>
    public static long? ParseIdFromKey(string key)
    {
        int slash = key.LastIndexOf('/');
        return long.TryParse(key.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long id) ? id : null;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Namespace}.{Component}.{Endpoint}";

    internal static string Check(string value, string what)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 64 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            throw new ArgumentException($"{what} name '{value}' must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'");
        }

        return value;
    }
}
