using System.Text.Json;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Tests.Llm.Protocols.Worker;

/// <summary>The prefill report's wire form: a transfer in parts lists each part's bytes; a whole one has no such field.</summary>
public sealed class PrefillReportTests
{
    private const string PartsGolden = """{"token_ids":[],"finish_reason":"length","prefill":{"remote":true,"prefill_instance_id":7,"transfer_ms":2.5,"transfer_bytes":1024,"transfer_tokens":8,"transfer_part_bytes":[512,512]}}""";

    private const string WholeGolden = """{"token_ids":[],"finish_reason":"length","prefill":{"remote":true,"prefill_instance_id":7,"transfer_ms":2.5,"transfer_bytes":1024,"transfer_tokens":8}}""";

    private static readonly PrefillReport Whole = new() { Remote = true, PrefillInstanceId = 7, TransferMs = 2.5, TransferBytes = 1024, TransferTokens = 8 };

    private static string Serialize(PrefillReport report) =>
        JsonSerializer.Serialize(new GenerateResponse { TokenIds = [], FinishReason = "length", Prefill = report }, WorkerJsonContext.Default.GenerateResponse);

    [Fact]
    public void Serialize_Parts_MatchesGolden_AndRoundTrips()
    {
        PrefillReport parts = Whole with { TransferPartBytes = [512, 512] };

        Assert.Equal(PartsGolden, Serialize(parts));
        PrefillReport read = JsonSerializer.Deserialize(PartsGolden, WorkerJsonContext.Default.GenerateResponse)!.Prefill!;
        Assert.Equal([512L, 512L], read.TransferPartBytes);
    }

    [Fact]
    public void Serialize_Whole_HasNoPartBytes()
    {
        Assert.Equal(WholeGolden, Serialize(Whole));
        Assert.Null(JsonSerializer.Deserialize(WholeGolden, WorkerJsonContext.Default.GenerateResponse)!.Prefill!.TransferPartBytes);
    }
}
