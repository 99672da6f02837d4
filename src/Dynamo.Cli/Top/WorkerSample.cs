namespace Dynamo.Cli.Top;

/// <summary>
/// One worker as one read of the frontend's <c>/metrics</c> shows it: its last load report
/// (<c>dynamo_frontend_worker_*</c>, or the worker's own <c>dynamo_component_*</c> where the same <c>/metrics</c>
/// carries them, as <c>dynamo run</c>'s does), the requests routed to it, and its generated tokens when known.
/// </summary>
internal sealed record WorkerSample(string Id, string Model, string Endpoint)
{
    public double? Running { get; init; }

    public double? Waiting { get; init; }

    public double? KvUsagePercent { get; init; }

    /// <summary>Fraction (0-1) of its prompt tokens found in its prefix cache since it started.</summary>
    public double? PrefixHitRate { get; init; }

    /// <summary>Requests the frontend's router sent it since the frontend started.</summary>
    public double Routed { get; init; }

    /// <summary>Tokens it generated since it started (<c>dynamo_component_output_tokens_total</c>); null where this <c>/metrics</c> does not carry it.</summary>
    public double? OutputTokens { get; init; }

    /// <summary>The component of its endpoint (<c>namespace.component.endpoint</c>): backend, prefill, ...</summary>
    public string Role => Endpoint.Split('.') is [_, string component, _] ? component : Endpoint;
}
