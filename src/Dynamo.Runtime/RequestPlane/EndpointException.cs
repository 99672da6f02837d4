namespace Dynamo.Runtime.RequestPlane;

/// <summary>Thrown by a handler to end a request with an error the client sees with this code and message.</summary>
public sealed class EndpointException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EndpointException(string code, string message)
        : base(message)
    {
        Code = code;
    }

    /// <summary>A short machine-readable code, for example "invalid_request".</summary>
    public string Code { get; }
}
