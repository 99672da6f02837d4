using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Runtime.RequestPlane;

public sealed class NatsPlaneOptionsTests
{
    [Theory]
    [InlineData("nats://127.0.0.1:4222", "nats://127.0.0.1:4222")]
    [InlineData("localhost:4222", "nats://localhost:4222")]
    [InlineData("nats-host", "nats://nats-host:4222")]
    [InlineData("nats://nats-host", "nats://nats-host:4222")]
    [InlineData("tls://secure.example:4443", "tls://secure.example:4443")]
    [InlineData("nats://a:4222, b:5222,tls://c:6222", "nats://a:4222,nats://b:5222,tls://c:6222")]
    [InlineData("nats://user:secret@host:4222", "nats://user:secret@host:4222")]
    [InlineData("nats://[::1]:4222", "nats://[::1]:4222")]
    [InlineData(" nats://10.200.0.11:4222 ", "nats://10.200.0.11:4222")]
    public void ParseUrl_GuideForms_Normalized(string value, string expected)
    {
        Assert.Equal(expected, NatsPlaneOptions.ParseUrl(value));
    }

    [Theory]
    [InlineData("http://host:4222", "http://host:4222")]
    [InlineData("nats://host:99999", "nats://host:99999")]
    [InlineData("host:port", "host:port")]
    [InlineData("nats://a:4222,,nats://b:4222", "")]
    [InlineData("nats://host:4222/path", "nats://host:4222/path")]
    [InlineData("nats://ho st:4222", "nats://ho st:4222")]
    [InlineData("nats://:4222", "nats://:4222")]
    public void ParseUrl_BadItem_ArgumentExceptionNamingSettingAndItem(string value, string item)
    {
        var error = Assert.Throws<ArgumentException>(() => NatsPlaneOptions.ParseUrl(value));

        Assert.Contains("NATS_SERVER", error.Message);
        Assert.Contains(item.Length > 0 ? $"'{item}'" : "empty item", error.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void ParseUrl_Empty_ArgumentException(string value)
    {
        var error = Assert.Throws<ArgumentException>(() => NatsPlaneOptions.ParseUrl(value));

        Assert.Contains("NATS_SERVER is empty", error.Message);
    }

    [Fact]
    public void Validate_NonPositiveWindow_NamesTheSetting()
    {
        var error = Assert.Throws<ArgumentException>(() => (NatsPlaneOptions.Default with { ResponseWindow = 0 }).Validate());

        Assert.Contains("ResponseWindow", error.Message);
    }

    [Fact]
    public void Validate_NonPositiveUnavailableTimeout_NamesTheSetting()
    {
        var error = Assert.Throws<ArgumentException>(() => (NatsPlaneOptions.Default with { UnavailableTimeout = TimeSpan.Zero }).Validate());

        Assert.Contains("UnavailableTimeout", error.Message);
        Assert.Equal(TimeSpan.FromSeconds(5), NatsPlaneOptions.Default.UnavailableTimeout);
    }

    [Theory]
    [InlineData(RequestErrorKind.NoResponders, true, true)]
    [InlineData(RequestErrorKind.Unreachable, true, true)]
    [InlineData(RequestErrorKind.Interrupted, false, true)]
    [InlineData(RequestErrorKind.Unavailable, false, true)]
    [InlineData(RequestErrorKind.Remote, false, false)]
    [InlineData(RequestErrorKind.DeadlineExceeded, false, false)]
    [InlineData(RequestErrorKind.Transport, false, false)]
    public void RequestPlaneException_Kind_InstanceFailedAndReissuable(RequestErrorKind kind, bool instanceFailed, bool reissuable)
    {
        var error = new RequestPlaneException(kind, "code", "message");

        Assert.Equal(instanceFailed, error.InstanceFailed);
        Assert.Equal(reissuable, error.Reissuable);
    }

    [Fact]
    public void ToNatsOpts_Defaults_DeadLinkNoticedInSecondsAndNoInitialRetry()
    {
        NATS.Client.Core.NatsOpts opts = NatsPlaneOptions.Default.ToNatsOpts();

        Assert.Equal(TimeSpan.FromSeconds(2), opts.PingInterval);
        Assert.Equal(2, opts.MaxPingOut);
        Assert.Equal(TimeSpan.FromMilliseconds(100), opts.ReconnectWaitMin);
        Assert.Equal(TimeSpan.FromSeconds(1), opts.ReconnectWaitMax);
        Assert.False(opts.RetryOnInitialConnect);
    }
}
