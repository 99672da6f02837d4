using System.Text;
using System.Text.Json;
using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>
/// The wire of a route's first token and completion (Routing/README.md, "Shared router component"): pinned JSON, the
/// optional lease id an older router leaves out, and the optional output tokens an older frontend leaves out.
/// </summary>
public sealed class RouteCompletionTests
{
    [Fact]
    public void ToUtf8Json_Completion_MatchesGoldenAndParsesBack()
    {
        const string json = """{"version":1,"lease_id":42,"cached_tokens":96}""";
        var completion = new RouteCompletion { LeaseId = 42, CachedTokens = 96 };

        Assert.Equal(json, Encoding.UTF8.GetString(completion.ToUtf8Json()));
        Assert.Equal(completion, RouteCompletion.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.ThrowsAny<JsonException>(() => RouteCompletion.Parse("null"u8));
    }

    [Fact]
    public void ToUtf8Json_CompletionWithOutputTokens_MatchesGoldenAndParsesBack()
    {
        const string json = """{"version":1,"lease_id":42,"cached_tokens":96,"output_tokens":200}""";
        var completion = new RouteCompletion { LeaseId = 42, CachedTokens = 96, OutputTokens = 200 };

        Assert.Equal(json, Encoding.UTF8.GetString(completion.ToUtf8Json()));
        Assert.Equal(completion, RouteCompletion.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.Null(RouteCompletion.Parse("""{"version":1,"lease_id":42,"cached_tokens":96}"""u8).OutputTokens);
    }

    [Fact]
    public void ToUtf8Json_FirstToken_MatchesGoldenAndParsesBack()
    {
        const string json = """{"version":1,"lease_id":42}""";
        var firstToken = new RouteFirstToken { LeaseId = 42 };

        Assert.Equal(json, Encoding.UTF8.GetString(firstToken.ToUtf8Json()));
        Assert.Equal(firstToken, RouteFirstToken.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.ThrowsAny<JsonException>(() => RouteFirstToken.Parse("null"u8));
    }

    [Theory]
    [InlineData("""{"worker_id":7,"overlap_blocks":2,"predicted_cached_tokens":32,"lease_id":5}""", 5L)]
    [InlineData("""{"worker_id":7,"overlap_blocks":2,"predicted_cached_tokens":32}""", null)]
    public void RouteResponse_WithOrWithoutLeaseId_RoundTrips(string json, long? leaseId)
    {
        var response = new RouteResponse { WorkerId = 7, OverlapBlocks = 2, PredictedCachedTokens = 32, LeaseId = leaseId };

        Assert.Equal(json, JsonSerializer.Serialize(response, RoutingJsonContext.Default.RouteResponse));
        Assert.Equal(response, JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouteResponse));
    }
}
