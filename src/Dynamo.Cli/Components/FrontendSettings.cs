namespace Dynamo.Cli.Components;

/// <summary>Flags of the HTTP frontend, shared by `dynamo frontend`, `dynamo run` and serve configs.</summary>
internal sealed record FrontendSettings
{
    public string Host { get; init; } = "0.0.0.0";

    public int HttpPort { get; init; } = 8000;

    public string Namespace { get; init; } = "dynamo";

    public string RouterMode { get; init; } = "round-robin";

    public bool JsonLogs { get; init; }

    /// <summary>KV router settings (--router-mode kv).</summary>
    public Dynamo.Llm.Routing.KvRouterOptions KvRouter { get; init; } = Dynamo.Llm.Routing.KvRouterOptions.Default;
}
