using System.Globalization;
using System.Net.Http.Headers;
using Dynamo.Llm.Protocols.OpenAi;
using Microsoft.AspNetCore.Http;

namespace Dynamo.Frontend.Admission;

/// <summary>
/// What a request says about its own handling under load, read once before it is admitted: its client (the
/// <c>Authorization: Bearer</c> key when it sends one, else its IP address), its priority (the
/// <see cref="PriorityHeader"/> header, else the body's <c>priority</c>, else 0; lower is served earlier) and its
/// deadline (the shorter of the body's <c>timeout</c> and the <see cref="TimeoutHeader"/> header, in seconds,
/// never past <see cref="AdmissionOptions.RequestTimeout"/>, which is also the default; null: none).
/// </summary>
internal sealed record RequestControls(string Client, int Priority, TimeSpan? Deadline)
{
    /// <summary>The priority header: an integer, lower is served earlier; it wins over the body's <c>priority</c>.</summary>
    public const string PriorityHeader = "X-Request-Priority";

    /// <summary>The deadline header: seconds from the request's arrival (a positive number).</summary>
    public const string TimeoutHeader = "X-Request-Timeout";

    /// <summary>Reads the controls; a malformed header or an out-of-range value is a 400 naming it.</summary>
    public static RequestControls Read(HttpRequest http, OpenAiRequestBase request, AdmissionOptions options)
    {
        int priority = request.Priority ?? 0;
        string? header = Single(http, PriorityHeader);
        if (header is not null)
        {
            priority = int.TryParse(header, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int p)
                ? p
                : throw OpenAiException.BadRequest($"Header {PriorityHeader}: '{header}' is not an integer (lower is served earlier).", PriorityHeader);
        }

        TimeSpan? deadline = null;
        if (request.Timeout is double body)
        {
            deadline = Seconds(body, "timeout");
        }

        header = Single(http, TimeoutHeader);
        if (header is not null)
        {
            TimeSpan fromHeader = double.TryParse(header, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double s)
                ? Seconds(s, TimeoutHeader)
                : throw OpenAiException.BadRequest($"Header {TimeoutHeader}: '{header}' is not a number of seconds.", TimeoutHeader);
            deadline = deadline is { } d && d < fromHeader ? d : fromHeader;
        }

        if (options.RequestTimeout > TimeSpan.Zero && (deadline is null || deadline > options.RequestTimeout))
        {
            deadline = options.RequestTimeout;
        }

        return new RequestControls(ClientOf(http), priority, deadline);
    }

    /// <summary>The client a request counts against: "key:" and its bearer key, else "ip:" and its remote address.</summary>
    internal static string ClientOf(HttpRequest http)
    {
        string? authorization = http.Headers.Authorization.Count == 1 ? http.Headers.Authorization[0] : null;
        if (authorization is not null && AuthenticationHeaderValue.TryParse(authorization, out AuthenticationHeaderValue? value)
            && value.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase) && !string.IsNullOrEmpty(value.Parameter))
        {
            return "key:" + value.Parameter;
        }

        return "ip:" + (http.HttpContext.Connection.RemoteIpAddress?.ToString() ?? "unknown");
    }

    private static string? Single(HttpRequest http, string name) =>
        http.Headers.TryGetValue(name, out var values) && values.Count > 0 ? values[^1]?.Trim() : null;

    private static TimeSpan Seconds(double seconds, string param) =>
        double.IsFinite(seconds) && seconds > 0 && seconds <= AdmissionOptions.MaxRequestTimeout.TotalSeconds
            ? TimeSpan.FromSeconds(seconds)
            : throw OpenAiException.BadRequest($"'{param}' must be a number of seconds above 0 and at most {AdmissionOptions.MaxRequestTimeout.TotalSeconds} (got {seconds.ToString(CultureInfo.InvariantCulture)}).", param);
}
