namespace Dynamo.Runtime.RequestPlane;

/// <summary>The header names and values of the NATS request-plane wire contract, version 1 (README.md).</summary>
internal static class NatsWire
{
    public const string Version = "Dyn-Version";
    public const string RequestId = "Dyn-Request-Id";
    public const string Deadline = "Dyn-Deadline";
    public const string Frame = "Dyn-Frame";
    public const string Seq = "Dyn-Seq";
    public const string CtlSubject = "Dyn-Ctl-Subject";
    public const string Window = "Dyn-Window";
    public const string ErrorKind = "Dyn-Error-Kind";
    public const string ErrorCode = "Dyn-Error-Code";
    public const string Ctl = "Dyn-Ctl";
    public const string Ack = "Dyn-Ack";
    public const string Keepalive = "Dyn-Keepalive";

    public const string CurrentVersion = "1";
    public const int CurrentMajor = 1;

    public const string FrameAccept = "accept";
    public const string FrameData = "data";
    public const string FrameHeartbeat = "heartbeat";
    public const string FrameEnd = "end";
    public const string FrameError = "error";

    public const string CtlAck = "ack";
    public const string CtlCancel = "cancel";
    public const string CtlResend = "resend";

    /// <summary>Prefix of the per-server control subjects: <c>_DYN_CTL.{server}.{stream}</c>.</summary>
    public const string CtlPrefix = "_DYN_CTL";

    /// <summary>Whether a Dyn-Version value has a major version this side speaks ("1", "1.2").</summary>
    public static bool IsSupportedVersion(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return false;
        }

        ReadOnlySpan<char> major = value.AsSpan();
        int dot = major.IndexOf('.');
        if (dot >= 0)
        {
            major = major[..dot];
        }

        return int.TryParse(major, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int m) && m == CurrentMajor;
    }
}
