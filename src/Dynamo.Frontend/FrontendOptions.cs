using Dynamo.Components.Processing;

namespace Dynamo.Frontend;

/// <summary>Settings of <see cref="FrontendServer"/>; bound from <c>dynamo frontend</c> flags, validated at startup.</summary>
public sealed record FrontendOptions
{
    /// <summary>The defaults (port 8000 on every interface, namespace "dynamo", round-robin).</summary>
    public static FrontendOptions Default { get; } = new();

    /// <summary>Interface to listen on: an IP address, "localhost", or "0.0.0.0" for all.</summary>
    public string Host { get; init; } = "0.0.0.0";

    /// <summary>HTTP port (--http-port); 0 picks a free port (see <see cref="FrontendServer.BaseAddress"/>).</summary>
    public int HttpPort { get; init; } = 8000;

    /// <summary>Largest accepted request body; larger ones are answered 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 16L << 20;

    /// <summary>How often a streaming response sends an SSE comment (": keep-alive") while no token arrives.</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>On shutdown, how long in-flight requests may still finish before they are ended.</summary>
    public TimeSpan ShutdownDrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>With no logger factory given: log JSON lines instead of plain text.</summary>
    public bool JsonLogs { get; init; }

    /// <summary>
    /// The processing pipeline the frontend runs itself while no Processor component serves its namespace:
    /// namespace, router mode, KV router settings, tokenizer cache.
    /// </summary>
    public ProcessorOptions Processing { get; init; } = ProcessorOptions.Default;

    /// <summary>The overload limits: slots, the admission queue, per-client and per-model limits, request deadlines.</summary>
    public AdmissionOptions Admission { get; init; } = AdmissionOptions.Default;

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public FrontendOptions Validate()
    {
        static void Check(bool ok, string flag, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{flag}: {message}", flag);
            }
        }

        Check(!string.IsNullOrWhiteSpace(Host), "--host", "must name an interface (0.0.0.0 for all)");
        Check(HttpPort is >= 0 and <= 65535, "--http-port", $"{HttpPort} is not a port (0..65535, 0 = any free port)");
        Check(MaxRequestBodyBytes >= 1024, "--max-request-body-bytes", $"{MaxRequestBodyBytes} must be at least 1024");
        Check(KeepAliveInterval > TimeSpan.Zero, "--keep-alive-interval", "must be positive");
        Check(ShutdownDrainTimeout >= TimeSpan.Zero, "--shutdown-drain-timeout", "must not be negative");
        Processing.Validate();
        Admission.Validate();
        return this;
    }
}
