namespace Dynamo.Load.Client;

/// <summary>
/// One attempt of a request on a connection: whether the request went out on it, and how many bytes of the
/// response came back. <see cref="CountingConnectionStream"/> fills it in; <see cref="ChatStreamClient"/>
/// resends only an attempt that wrote its request and got 0 response bytes.
/// </summary>
internal sealed class ExchangeBytes
{
    private long _responseBytes;
    private volatile bool _requestWritten;

    /// <summary>
    /// The attempt being sent in this async flow: the connection stream adopts it on its first write
    /// (HttpClient writes the request from the caller's flow), so that its reads count for it.
    /// </summary>
    public static AsyncLocal<ExchangeBytes?> Current { get; } = new();

    public bool RequestWritten => _requestWritten;

    public long ResponseBytes => Interlocked.Read(ref _responseBytes);

    public void Written() => _requestWritten = true;

    public void Received(int bytes) => Interlocked.Add(ref _responseBytes, bytes);
}
