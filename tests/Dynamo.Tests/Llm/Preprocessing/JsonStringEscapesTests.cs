using System.Text;
using System.Text.Json;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Tests.Llm.Preprocessing;

public class JsonStringEscapesTests
{
    [Theory]
    [InlineData("""{"a":"\ud800"}""", "a")]
    [InlineData("""{"a":"x\udc00y"}""", "a")]
    [InlineData("""{"a":"\ud800\u0041"}""", "a")]
    [InlineData("""{"a":"\ud800\\udc00"}""", "a")]
    [InlineData("{\"a\":\"\\ud800", null)]
    [InlineData("""{"a":[1,{"b":[true,"ok","\uDBFF"]}]}""", "a[1].b[2]")]
    [InlineData("""{"a":[[],{},"\ud800"]}""", "a[2]")]
    [InlineData("""{"x\ud800":1}""", "x\\ud800")]
    [InlineData("\"\\ud800\"", "")]
    [InlineData("""{"a":"\ud83d\ude00","b":"\\ud800","c":"\u0064800"}""", null)]
    [InlineData("""{"a":"\uD83D\uDE00\ud800"}""", "a")]
    public void FindLoneSurrogate_ReturnsThePathOfTheFirstBadString(string json, string? expected)
    {
        Assert.Equal(expected, JsonStringEscapes.FindLoneSurrogate(Encoding.UTF8.GetBytes(json)));
    }

    [Fact]
    public void FindLoneSurrogate_AgreesWithTheSerializerOnRandomEscapes()
    {
        var random = new Random(7);
        string[] pieces = ["a", "\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud83d\\ude00", "\\\\", "\\\\ud800", "\\u0041", "\\n", "é"];
        for (int i = 0; i < 2000; i++)
        {
            var text = new StringBuilder();
            int count = random.Next(0, 6);
            for (int j = 0; j < count; j++)
            {
                text.Append(pieces[random.Next(pieces.Length)]);
            }

            byte[] json = Encoding.UTF8.GetBytes($$"""{"v":"{{text}}"}""");
            bool serializerAccepts;
            try
            {
                _ = JsonDocument.Parse(json).RootElement.GetProperty("v").GetString();
                serializerAccepts = true;
            }
            catch (InvalidOperationException)
            {
                serializerAccepts = false;
            }

            Assert.True(serializerAccepts == (JsonStringEscapes.FindLoneSurrogate(json) is null), text.ToString());
        }
    }
}
