using System.Net;
using Dynamo.Frontend;
using Dynamo.Frontend.Admission;
using Dynamo.Llm.Protocols.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Tests.Frontend.Admission;

/// <summary>A request's client, priority and deadline, from its headers, its body fields and the server's default.</summary>
public sealed class RequestControlsTests
{
    private static HttpRequest Http(params (string Name, string Value)[] headers)
    {
        var context = new DefaultHttpContext();
        context.Connection.RemoteIpAddress = IPAddress.Parse("10.1.2.3");
        foreach ((string name, string value) in headers)
        {
            context.Request.Headers.Append(name, value);
        }

        return context.Request;
    }

    private static RequestControls Read(HttpRequest http, int? priority = null, double? timeout = null, AdmissionOptions? options = null) =>
        RequestControls.Read(http, new CompletionRequest { Model = "m", Priority = priority, Timeout = timeout }, options ?? AdmissionOptions.Default);

    [Fact]
    public void Read_NothingGiven_PriorityZeroAndTheServersDeadline()
    {
        RequestControls c = Read(Http());

        Assert.Equal(new RequestControls("ip:10.1.2.3", 0, TimeSpan.FromSeconds(600)), c);
    }

    [Fact]
    public void Read_BodyAndHeaderPriority_TheHeaderWins()
    {
        Assert.Equal(7, Read(Http(), priority: 7).Priority);
        Assert.Equal(-2, Read(Http((RequestControls.PriorityHeader, "-2")), priority: 7).Priority);
    }

    [Theory]
    [InlineData(30.0, null, 30.0)]
    [InlineData(null, "12.5", 12.5)]
    [InlineData(30.0, "12.5", 12.5)]
    [InlineData(5.0, "12.5", 5.0)]
    [InlineData(9000.0, null, 600.0)]
    public void Read_Deadlines_TheShortestOfBodyHeaderAndServer(double? body, string? header, double expected)
    {
        HttpRequest http = header is null ? Http() : Http((RequestControls.TimeoutHeader, header));

        Assert.Equal(TimeSpan.FromSeconds(expected), Read(http, timeout: body).Deadline);
    }

    [Fact]
    public void Read_ServerWithoutDeadline_OnlyTheRequestsOwn()
    {
        AdmissionOptions none = AdmissionOptions.Default with { RequestTimeout = TimeSpan.Zero };

        Assert.Null(Read(Http(), options: none).Deadline);
        Assert.Equal(TimeSpan.FromSeconds(9000), Read(Http(), timeout: 9000, options: none).Deadline);
    }

    [Theory]
    [InlineData(RequestControls.PriorityHeader, "high", RequestControls.PriorityHeader)]
    [InlineData(RequestControls.PriorityHeader, "1.5", RequestControls.PriorityHeader)]
    [InlineData(RequestControls.TimeoutHeader, "soon", RequestControls.TimeoutHeader)]
    [InlineData(RequestControls.TimeoutHeader, "0", RequestControls.TimeoutHeader)]
    [InlineData(RequestControls.TimeoutHeader, "-1", RequestControls.TimeoutHeader)]
    public void Read_BadHeader_400NamingIt(string header, string value, string param)
    {
        OpenAiException e = Assert.Throws<OpenAiException>(() => Read(Http((header, value))));

        Assert.Equal((400, "invalid_value", param), (e.StatusCode, e.Code, e.Param));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-3.0)]
    [InlineData(1e9)]
    public void Read_BadTimeoutField_400NamingIt(double timeout)
    {
        OpenAiException e = Assert.Throws<OpenAiException>(() => Read(Http(), timeout: timeout));

        Assert.Equal((400, "invalid_value", "timeout"), (e.StatusCode, e.Code, e.Param));
    }

    [Fact]
    public void ClientOf_BearerKeyElseRemoteAddress()
    {
        Assert.Equal("key:sk-one", RequestControls.ClientOf(Http(("Authorization", "Bearer sk-one"))));
        Assert.Equal("key:sk-one", RequestControls.ClientOf(Http(("Authorization", "bearer sk-one"))));
        Assert.Equal("ip:10.1.2.3", RequestControls.ClientOf(Http(("Authorization", "Basic dXNlcjpwYXNz"))));
        Assert.Equal("ip:10.1.2.3", RequestControls.ClientOf(Http()));
    }
}
