using System.Text;
using System.Text.Json;
using Dynamo.Llm.Disaggregation;

namespace Dynamo.Tests.Llm.Disaggregation;

/// <summary>The conditional disaggregation rule, row by row: each row changes one thing.</summary>
public sealed class DisaggregationPolicyTests
{
    private static readonly DisaggregationSettings Rule = new() { MaxLocalPrefillLength = 100, MaxPrefillQueueSize = 3 };

    public static TheoryData<string, DisaggregationSettings, int, int, int, int, bool, string> Rows => new()
    {
        // name, settings, prompt tokens, decode cached tokens, prefill queue depth, prefill workers, remote, reason
        { "long prompt, nothing cached, queue empty: remote", Rule, 500, 0, 0, 2, true, PrefillReasons.LongPrompt },
        { "uncached part exactly the limit: local", Rule, 164, 64, 0, 2, false, PrefillReasons.ShortPrompt },
        { "uncached part one over the limit: remote", Rule, 165, 64, 0, 2, true, PrefillReasons.LongPrompt },
        { "long prompt mostly cached on the decode worker: local", Rule, 500, 480, 0, 2, false, PrefillReasons.ShortPrompt },
        { "queue one below the limit: remote", Rule, 500, 0, 2, 2, true, PrefillReasons.LongPrompt },
        { "queue at the limit: local", Rule, 500, 0, 3, 2, false, PrefillReasons.QueueFull },
        { "short prompt and full queue: short wins", Rule, 50, 0, 9, 2, false, PrefillReasons.ShortPrompt },
        { "no prefill worker: local", Rule, 500, 0, 0, 0, false, PrefillReasons.PrefillRejected },
        { "unconditional: remote even when short and the queue full", Rule with { ConditionalDisagg = false }, 5, 0, 9, 1, true, PrefillReasons.Unconditional },
        { "unconditional, one-token prompt: local", Rule with { ConditionalDisagg = false }, 1, 0, 0, 1, false, PrefillReasons.ShortPrompt },
        { "limit 0: any uncached token goes remote", Rule with { MaxLocalPrefillLength = 0 }, 2, 1, 0, 1, true, PrefillReasons.LongPrompt },
        { "limit 0, whole prompt cached: local", Rule with { MaxLocalPrefillLength = 0 }, 32, 32, 0, 1, false, PrefillReasons.ShortPrompt },
        { "queue size 0: never remote by the rule", Rule with { MaxPrefillQueueSize = 0 }, 500, 0, 0, 1, false, PrefillReasons.QueueFull },
        { "a predicted hit above the prompt counts as the whole prompt", Rule, 120, 500, 0, 1, false, PrefillReasons.ShortPrompt },
    };

    [Theory]
    [MemberData(nameof(Rows))]
    public void Decide_Row_IsTheRowsDecision(string name, DisaggregationSettings settings, int prompt, int cached, int queue, int workers, bool remote, string reason)
    {
        DisaggregationDecision decision = DisaggregationPolicy.Decide(settings, prompt, cached, queue, workers);
        Assert.True(decision == new DisaggregationDecision(remote, reason), $"{name}: got {decision}");
    }

    [Fact]
    public void Settings_Json_RoundTripsWithTheGuidesNamesAndDefaultsForAbsentFields()
    {
        var settings = new DisaggregationSettings { ConditionalDisagg = false, MaxLocalPrefillLength = 10, MaxPrefillQueueSize = 64 };
        string json = Encoding.UTF8.GetString(settings.ToJsonUtf8());
        Assert.Equal("""{"conditional_disagg":false,"max_local_prefill_length":10,"max_prefill_queue_size":64}""", json);
        Assert.Equal(settings, DisaggregationSettings.FromJson(Encoding.UTF8.GetBytes(json)));
        Assert.Equal(DisaggregationSettings.Default with { MaxLocalPrefillLength = 7 }, DisaggregationSettings.FromJson("""{"max_local_prefill_length":7,"other":1}"""u8));
        Assert.Equal("v1/disagg/dynamo/m", DisaggregationSettings.KeyFor("dynamo", "m"));
    }

    [Fact]
    public void Settings_OutOfRangeOrNotJson_ClearErrors()
    {
        Assert.Contains("--max-local-prefill-length", Assert.Throws<ArgumentException>(() => DisaggregationSettings.FromJson("""{"max_local_prefill_length":-1}"""u8)).Message);
        Assert.Contains("--max-prefill-queue-size", Assert.Throws<ArgumentException>(() => DisaggregationSettings.FromJson("""{"max_prefill_queue_size":-2}"""u8)).Message);
        Assert.ThrowsAny<JsonException>(() => DisaggregationSettings.FromJson("null"u8));
        Assert.ThrowsAny<JsonException>(() => DisaggregationSettings.FromJson("""{"max_prefill_queue_size":"x"}"""u8));
    }
}
