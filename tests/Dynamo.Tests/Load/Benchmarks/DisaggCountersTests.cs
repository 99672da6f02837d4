using Dynamo.Load.Benchmarks;

namespace Dynamo.Tests.Load.Benchmarks;

/// <summary>The disaggregation counters <c>bench disagg</c> reads from worker and frontend <c>/metrics</c>, and their differences.</summary>
public sealed class DisaggCountersTests
{
    private const string Decode = """
        # HELP dynamo_component_remote_prefills_total Decode side: requests whose KV came from a prefill worker
        # TYPE dynamo_component_remote_prefills_total gauge
        dynamo_component_remote_prefills_total{model="m",endpoint="ns.backend.generate",instance="1a"} 3
        dynamo_component_local_prefills_total{model="m",endpoint="ns.backend.generate",instance="1a",reason="prefill_failed"} 1
        dynamo_component_local_prefills_total{model="m",endpoint="ns.backend.generate",instance="1a",reason="no_blocks"} 2
        dynamo_component_kv_transfer_received_bytes_total{model="m",endpoint="ns.backend.generate",instance="1a"} 3000
        dynamo_component_kv_transfer_seconds_total{model="m",endpoint="ns.backend.generate",instance="1a"} 0.003
        dynamo_component_remote_prefill_seconds_total{model="m",endpoint="ns.backend.generate",instance="1a"} 1.5
        dynamo_component_prefills_served_total{model="m",endpoint="ns.backend.generate",instance="1a"} 0
        """;

    private const string Prefill = """
        dynamo_component_remote_prefills_total{model="m",endpoint="ns.prefill.generate",instance="2b"} 0
        dynamo_component_prefills_served_total{model="m",endpoint="ns.prefill.generate",instance="2b"} 3
        dynamo_component_kv_transfer_sent_bytes_total{model="m",endpoint="ns.prefill.generate",instance="2b"} 3000
        """;

    [Fact]
    public void OfMetrics_SumsTheWorkersAndTheirFallbacksByReason()
    {
        DisaggCounters c = DisaggCounters.OfMetrics([Decode, Prefill]);

        Assert.Equal(3, c.RemotePrefills);
        Assert.Equal(3, c.PrefillsServed);
        Assert.Equal(3000, c.TransferBytes);
        Assert.Equal(0.001, c.MeanTransferSeconds, 9);
        Assert.Equal(0.5, c.MeanRemotePrefillSeconds, 9);
        Assert.Equal(0.000001 * 1000, c.TransferGbps, 9);
        Assert.Equal(new Dictionary<string, long> { ["prefill_failed"] = 1, ["no_blocks"] = 2 }, c.Fallbacks);
    }

    [Fact]
    public void DecisionsOf_TheModelsDecisionsByPlaceAndReason()
    {
        const string Frontend = """
            # TYPE dynamo_frontend_disagg_decisions_total gauge
            dynamo_frontend_disagg_decisions_total{model="m",prefill="remote",reason="long_prompt"} 6
            dynamo_frontend_disagg_decisions_total{model="m",prefill="local",reason="short_prompt"} 18
            dynamo_frontend_disagg_decisions_total{model="other",prefill="remote",reason="long_prompt"} 5
            dynamo_frontend_requests_total{model="m"} 24
            """;

        IReadOnlyDictionary<string, long> decisions = DisaggCounters.DecisionsOf(Frontend, "m");

        Assert.Equal(new Dictionary<string, long> { ["remote/long_prompt"] = 6, ["local/short_prompt"] = 18 }, decisions);
        Assert.Equal(6, (DisaggCounters.Zero with { Decisions = decisions }).RemoteDecisions);
    }

    [Fact]
    public void Since_TheRunsShareOnly()
    {
        DisaggCounters before = DisaggCounters.OfMetrics([Decode]) with { Decisions = new Dictionary<string, long> { ["remote/long_prompt"] = 1 } };
        DisaggCounters after = before with
        {
            RemotePrefills = 10,
            TransferBytes = 10_000,
            Fallbacks = new Dictionary<string, long> { ["prefill_failed"] = 1, ["no_blocks"] = 5 },
            Decisions = new Dictionary<string, long> { ["remote/long_prompt"] = 8, ["local/short_prompt"] = 4 },
        };

        DisaggCounters run = after.Since(before);

        Assert.Equal(7, run.RemotePrefills);
        Assert.Equal(7000, run.TransferBytes);
        Assert.Equal(new Dictionary<string, long> { ["no_blocks"] = 3 }, run.Fallbacks);
        Assert.Equal(new Dictionary<string, long> { ["remote/long_prompt"] = 7, ["local/short_prompt"] = 4 }, run.Decisions);
        Assert.Equal(0, run.TransferSeconds);
    }

    [Fact]
    public void PrometheusText_SamplesWithEscapedLabelsAndExponents_CommentsAndJunkSkipped()
    {
        PrometheusSample[] samples = [.. PrometheusText.Parse("# HELP x y\nplain 1.5e3\nlabelled{a=\"q\\\"uote\",b=\"\"} -2\nnot a sample\n\n")];

        Assert.Equal(2, samples.Length);
        Assert.Equal(("plain", 1500.0), (samples[0].Name, samples[0].Value));
        Assert.Equal("q\"uote", samples[1].Label("a"));
        Assert.Equal("", samples[1].Label("b"));
        Assert.Equal("", samples[1].Label("absent"));
        Assert.Equal(-2, samples[1].Value);
    }
}
