using System.Text;
using System.Text.Json;
using Dynamo.Components.Parallel;

namespace Dynamo.Tests.Components.Parallel;

/// <summary>The rendezvous JSON, pinned: ranks of two builds must read each other's hello and answer.</summary>
public class RendezvousWireTests
{
    [Fact]
    public void Hello_Json_IsPinned()
    {
        var hello = new RendezvousHello
        {
            Rank = 1,
            Size = 4,
            NodeCount = 2,
            NodeRank = 1,
            HostId = "node-b/boot",
            DataPort = 40001,
            Agreement = [1, 2, 3],
            AgreementText = "model sha256 ab12",
        };
        string json = JsonSerializer.Serialize(hello, CollectivesJsonContext.Default.RendezvousHello);
        Assert.Equal("""{"v":1,"rank":1,"size":4,"nnodes":2,"node_rank":1,"host_id":"node-b/boot","data_port":40001,"agreement":"AQID","agreement_text":"model sha256 ab12"}""", json);
        Assert.Equal(hello.AgreementText, JsonSerializer.Deserialize(Encoding.UTF8.GetBytes(json), CollectivesJsonContext.Default.RendezvousHello)!.AgreementText);
    }

    [Fact]
    public void Reply_Json_IsPinned()
    {
        var reply = new RendezvousReply
        {
            Ok = true,
            Session = 12345678901234567890,
            Peers = [new RendezvousPeer { Rank = 0, Host = "10.0.0.1", Port = 40000, HostId = "a" }, new RendezvousPeer { Rank = 1, Host = "10.0.0.2", Port = 40001, HostId = "b" }],
        };
        Assert.Equal(
            """{"v":1,"ok":true,"session":12345678901234567890,"peers":[{"host":"10.0.0.1","port":40000,"host_id":"a"},{"rank":1,"host":"10.0.0.2","port":40001,"host_id":"b"}]}""",
            JsonSerializer.Serialize(reply, CollectivesJsonContext.Default.RendezvousReply));
        Assert.Equal(
            """{"v":1,"error":"rank 1 disagrees with rank 0: a vs b","peers":[]}""",
            JsonSerializer.Serialize(new RendezvousReply { Error = "rank 1 disagrees with rank 0: a vs b" }, CollectivesJsonContext.Default.RendezvousReply));
    }
}
