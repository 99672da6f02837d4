using System.Text;
using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public sealed class KvEventJsonTests
{
    private const string StoredJson =
        """{"worker_id":7,"event_id":12,"data":{"stored":{"parent_hash":123,"blocks":[{"block_hash":1,"tokens_hash":2}]}}}""";

    private const string FirstStoredJson =
        """{"worker_id":7,"event_id":11,"data":{"stored":{"parent_hash":null,"blocks":[{"block_hash":123,"tokens_hash":123},{"block_hash":18446744073709551615,"tokens_hash":9007199254740993}]}}}""";

    private const string RemovedJson = """{"worker_id":7,"event_id":13,"data":{"removed":{"block_hashes":[1,2]}}}""";

    private const string ClearedJson = """{"worker_id":7,"event_id":14,"data":"cleared"}""";

    // A data-parallel rank's event (--dp-size): rank 0 leaves the field out, so the lines above are a rank-0 worker's too.
    private const string RankedJson = """{"worker_id":7,"event_id":15,"data":"cleared","dp_rank":2}""";

    private const string RankedDumpJson = """{"worker_id":7,"last_event_id":3,"stored":[],"dp_rank":1}""";

    private const string DumpJson =
        """{"worker_id":7,"last_event_id":42,"stored":[{"parent_hash":null,"blocks":[{"block_hash":10,"tokens_hash":10},{"block_hash":11,"tokens_hash":3}]},{"parent_hash":10,"blocks":[{"block_hash":12,"tokens_hash":4}]}]}""";

    private static readonly KvEvent Stored = new(7, 12, new KvStoredData(123, [new KvStoredBlock(1, 2)]));

    private static readonly KvEvent FirstStored = new(
        7, 11, new KvStoredData(null, [new KvStoredBlock(123, 123), new KvStoredBlock(ulong.MaxValue, 9007199254740993)]));

    private static readonly KvEvent Removed = new(7, 13, new KvRemovedData([1, 2]));

    private static readonly KvEvent Cleared = new(7, 14, KvClearedData.Instance);

    private static readonly KvEvent Ranked = new(7, 15, KvClearedData.Instance, DpRank: 2);

    private static readonly KvEventDump Dump = new(7, 42,
    [
        new KvStoredData(null, [new KvStoredBlock(10, 10), new KvStoredBlock(11, 3)]),
        new KvStoredData(10, [new KvStoredBlock(12, 4)]),
    ]);

    public static TheoryData<string, KvEvent> Goldens => new()
    {
        { StoredJson, Stored },
        { FirstStoredJson, FirstStored },
        { RemovedJson, Removed },
        { ClearedJson, Cleared },
        { RankedJson, Ranked },
    };

    [Theory]
    [MemberData(nameof(Goldens))]
    public void Serialize_EachEventKind_MatchesGolden(string json, KvEvent kvEvent)
    {
        Assert.Equal(json, KvEventJson.Serialize(kvEvent));
        Assert.Equal(json, Encoding.UTF8.GetString(KvEventJson.SerializeToUtf8(kvEvent)));
    }

    [Theory]
    [MemberData(nameof(Goldens))]
    public void Deserialize_Golden_GivesTheEvent(string json, KvEvent kvEvent)
    {
        Assert.Equal(kvEvent, KvEventJson.Deserialize(json));
        Assert.Equal(kvEvent, KvEventJson.Deserialize(Encoding.UTF8.GetBytes(json)));
    }

    [Fact]
    public void Dump_OfADataParallelRank_CarriesItsRankBothWays()
    {
        var dump = new KvEventDump(7, 3, []) { DpRank = 1 };

        Assert.Equal(RankedDumpJson, KvEventJson.SerializeDump(dump));
        Assert.Equal(dump, KvEventJson.DeserializeDump(RankedDumpJson));
        Assert.NotEqual(dump, dump with { DpRank = 0 });
    }

    [Fact]
    public void SerializeDump_Dump_MatchesGolden()
    {
        Assert.Equal(DumpJson, KvEventJson.SerializeDump(Dump));
        Assert.Equal(DumpJson, Encoding.UTF8.GetString(KvEventJson.SerializeDumpToUtf8(Dump)));
    }

    [Fact]
    public void DeserializeDump_Golden_GivesTheDump()
    {
        Assert.Equal(Dump, KvEventJson.DeserializeDump(DumpJson));
        Assert.Equal(Dump, KvEventJson.DeserializeDump(Encoding.UTF8.GetBytes(DumpJson)));
    }

    [Fact]
    public void RoundTrip_RandomEvents_Equal()
    {
        var random = new Random(3);
        for (int i = 0; i < 200; i++)
        {
            ulong NextHash() => (ulong)random.NextInt64() ^ ((ulong)random.Next(4) << 62);
            KvEventData data = random.Next(3) switch
            {
                0 => new KvStoredData(
                    random.Next(2) == 0 ? null : NextHash(),
                    Enumerable.Range(0, random.Next(0, 6)).Select(_ => new KvStoredBlock(NextHash(), NextHash())).ToArray()),
                1 => new KvRemovedData(Enumerable.Range(0, random.Next(0, 6)).Select(_ => NextHash()).ToArray()),
                _ => KvClearedData.Instance,
            };
            var kvEvent = new KvEvent(random.NextInt64(long.MinValue, long.MaxValue), NextHash(), data, random.Next(3) == 0 ? random.Next(0, 64) : 0);

            Assert.Equal(kvEvent, KvEventJson.Deserialize(KvEventJson.SerializeToUtf8(kvEvent)));
            Assert.Equal(kvEvent, KvEventJson.Deserialize(KvEventJson.Serialize(kvEvent)));
        }
    }

    // The hand-written reader takes the exact wire shape and gives what the serializer gives; anything
    // else it declines (and Deserialize falls back), so the two never disagree.
    [Theory]
    [MemberData(nameof(Goldens))]
    [InlineData("""{"data":{"stored":{"blocks":[{"tokens_hash":2,"block_hash":1}],"parent_hash":123}},"event_id":12,"worker_id":7}""", null)]
    [InlineData("""{"worker_id":1,"event_id":1,"data":{"stored":{"blocks":[]}}}""", null)]
    [InlineData(""" { "worker_id" : 1 , "event_id" : 2 , "data" : { "removed" : { "block_hashes" : [ ] } } } """, null)]
    [InlineData("""{"worker_id":7,"event_id":12,"dp_rank":0,"data":"cleared"}""", null)]
    [InlineData("""{"worker_id":7,"dp_rank":3,"event_id":12,"data":"cleared"}""", null)]
    public void FastReader_WireShape_EqualsSerializer(string json, KvEvent? expected)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(json);

        Assert.True(KvEventFastReader.TryRead(utf8, out KvEvent? fast));
        Assert.Equal(KvEventJson.DeserializeWithSerializer(utf8), fast);
        if (expected is not null)
        {
            Assert.Equal(expected, fast);
        }
    }

    [Theory]
    [InlineData("""{"worker_id":7,"event_id":12,"lora_id":0,"data":"cleared"}""")]
    [InlineData("""{"worker_id":7,"event_id":12,"dp_rank":1,"dp_rank":2,"data":"cleared"}""")]
    [InlineData("""{"worker_id":7,"event_id":12,"dp_rank":1.5,"data":"cleared"}""")]
    [InlineData("""{"worker_id":7,"event_id":12,"event_id":13,"data":"cleared"}""")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":1,"lora_id":null,"blocks":[]}}}""")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"blocks":[{"block_hash":1,"tokens_hash":2,"x":{}}]}}}""")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{"block_hashes":[1.5]}}}""")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":"cleared"} x""")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":"cleared",}""")]
    [InlineData("""{"worker_id":7,"event_id":1}""")]
    public void FastReader_OtherShapes_Declines(string json)
    {
        Assert.False(KvEventFastReader.TryRead(Encoding.UTF8.GetBytes(json), out _));
    }

    [Fact]
    public void RoundTrip_EmptyDump_Equal()
    {
        var dump = new KvEventDump(3, 0, []);

        Assert.Equal("""{"worker_id":3,"last_event_id":0,"stored":[]}""", KvEventJson.SerializeDump(dump));
        Assert.Equal(dump, KvEventJson.DeserializeDump(KvEventJson.SerializeDump(dump)));
    }

    [Fact]
    public void Deserialize_UnknownFieldsEverywhere_Ignored()
    {
        const string json =
            """
            {"worker_id":7,"event_id":12,"dp_rank":0,"extra":{"a":[1,{"b":null}]},
             "data":{"stored":{"parent_hash":123,"lora_id":null,"blocks":[{"block_hash":1,"tokens_hash":2,"mm_extra_info":{}}]}}}
            """;

        Assert.Equal(Stored, KvEventJson.Deserialize(json));
    }

    [Fact]
    public void DeserializeDump_UnknownFields_Ignored()
    {
        const string json =
            """{"version":2,"worker_id":7,"last_event_id":42,"stored":[{"parent_hash":null,"x":1,"blocks":[{"block_hash":10,"tokens_hash":10},{"block_hash":11,"tokens_hash":3}]},{"parent_hash":10,"blocks":[{"block_hash":12,"tokens_hash":4}]}]}""";

        Assert.Equal(Dump, KvEventJson.DeserializeDump(json));
    }

    [Fact]
    public void Deserialize_ParentHashLeftOut_IsNull()
    {
        const string json = """{"worker_id":1,"event_id":1,"data":{"stored":{"blocks":[{"block_hash":5,"tokens_hash":5}]}}}""";

        Assert.Equal(new KvEvent(1, 1, new KvStoredData(null, [new KvStoredBlock(5, 5)])), KvEventJson.Deserialize(json));
    }

    [Fact]
    public void Deserialize_PropertyOrderShuffled_SameEvent()
    {
        const string json =
            """{"data":{"stored":{"blocks":[{"tokens_hash":2,"block_hash":1}],"parent_hash":123}},"event_id":12,"worker_id":7}""";

        Assert.Equal(Stored, KvEventJson.Deserialize(json));
    }

    [Theory]
    [InlineData("", "JSON")]
    [InlineData("null", "null")]
    [InlineData("[]", "KvEvent")]
    [InlineData("{", "JSON")]
    [InlineData("""{"worker_id":7,"event_id":1}""", "data")]
    [InlineData("""{"worker_id":7,"data":"cleared"}""", "event_id")]
    [InlineData("""{"event_id":1,"data":"cleared"}""", "worker_id")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":null}""", "Data")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":"flushed"}""", "flushed")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":42}""", "cleared")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{}}""", "empty")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"evicted":{}}}""", "evicted")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{"block_hashes":[1]},"stored":{"blocks":[]}}}""", "exactly one")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":null}}""", "data.stored")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":1}}}""", "blocks")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":1,"blocks":null}}}""", "blocks")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":1,"blocks":[null]}}}""", "blocks[0]")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":1,"blocks":[{"block_hash":1}]}}}""", "tokens_hash")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"stored":{"parent_hash":"1","blocks":[]}}}""", "parent_hash")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{}}}""", "block_hashes")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{"block_hashes":[-1]}}}""", "block_hashes[0]")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{"block_hashes":[18446744073709551616]}}}""", "block_hashes[0]")]
    [InlineData("""{"worker_id":7,"event_id":1,"data":{"removed":{"block_hashes":[1.5]}}}""", "block_hashes[0]")]
    [InlineData("""{"worker_id":7,"event_id":-1,"data":"cleared"}""", "event_id")]
    [InlineData("""{"worker_id":"7","event_id":1,"data":"cleared"}""", "worker_id")]
    public void Deserialize_Malformed_ThrowsFormatExceptionSayingWhere(string json, string mentioned)
    {
        FormatException e = Assert.Throws<FormatException>(() => KvEventJson.Deserialize(json));
        FormatException utf8 = Assert.Throws<FormatException>(() => KvEventJson.Deserialize(Encoding.UTF8.GetBytes(json)));

        Assert.StartsWith("Invalid KV event JSON", e.Message, StringComparison.Ordinal);
        Assert.Contains(mentioned, e.Message, StringComparison.Ordinal);
        Assert.Equal(e.Message, utf8.Message);
    }

    [Theory]
    [InlineData("null", "null")]
    [InlineData("""{"worker_id":7,"last_event_id":1}""", "stored")]
    [InlineData("""{"worker_id":7,"stored":[]}""", "last_event_id")]
    [InlineData("""{"worker_id":7,"last_event_id":1,"stored":null}""", "Stored")]
    [InlineData("""{"worker_id":7,"last_event_id":1,"stored":[null]}""", "stored[0]")]
    [InlineData("""{"worker_id":7,"last_event_id":1,"stored":[{"parent_hash":null}]}""", "blocks")]
    [InlineData("""{"worker_id":7,"last_event_id":1,"stored":{}}""", "stored")]
    public void DeserializeDump_Malformed_ThrowsFormatExceptionSayingWhere(string json, string mentioned)
    {
        FormatException e = Assert.Throws<FormatException>(() => KvEventJson.DeserializeDump(json));
        FormatException utf8 = Assert.Throws<FormatException>(() => KvEventJson.DeserializeDump(Encoding.UTF8.GetBytes(json)));

        Assert.StartsWith("Invalid KV event dump JSON", e.Message, StringComparison.Ordinal);
        Assert.Contains(mentioned, e.Message, StringComparison.Ordinal);
        Assert.Equal(e.Message, utf8.Message);
    }

    [Fact]
    public void Equality_StoredAndRemoved_CompareListsByValue()
    {
        Assert.Equal(new KvStoredData(1, [new KvStoredBlock(2, 3)]), new KvStoredData(1, new List<KvStoredBlock> { new(2, 3) }));
        Assert.NotEqual(new KvStoredData(1, [new KvStoredBlock(2, 3)]), new KvStoredData(null, [new KvStoredBlock(2, 3)]));
        Assert.Equal(new KvRemovedData([1, 2]).GetHashCode(), new KvRemovedData(new List<ulong> { 1, 2 }).GetHashCode());
        Assert.NotEqual<KvEventData>(new KvRemovedData([]), new KvStoredData(null, []));
        Assert.Equal(KvClearedData.Instance, new KvClearedData());
    }
}
