using System.CommandLine;
using Dynamo.Components.Processing;
using Dynamo.Frontend;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The HTTP frontend's flags, shared by `frontend` and `run`, bound into <see cref="FrontendOptions"/> and its
/// <see cref="ProcessorOptions"/> (the defaults are the records'); the caller validates the result once.
/// </summary>
internal sealed class FrontendFlags
{
    private readonly Option<int> _port;
    private readonly AdmissionFlags _admission;
    private readonly Option<string> _host;
    private readonly Option<string> _routerMode = new("--router-mode") { Description = "round-robin, random or kv", DefaultValueFactory = _ => ProcessorOptions.Default.RouterMode };
    private readonly Option<string>? _namespace;
    private readonly Option<bool> _jsonLogs = new("--json-logs") { Description = "One JSON object per log line" };
    private readonly Option<double> _shutdownDrain = new("--shutdown-drain-timeout") { Description = "Seconds requests in flight may take to finish on SIGTERM before their streams are ended", DefaultValueFactory = _ => FrontendOptions.Default.ShutdownDrainTimeout.TotalSeconds };
    private readonly Option<int> _migrationLimit = new("--migration-limit") { Description = "Times a stream may move to another worker when its worker dies, stalls or stops mid-stream (0: never)", DefaultValueFactory = _ => ProcessorOptions.Default.MigrationLimit };
    private readonly Option<double> _migrationWait = new("--migration-wait") { Description = "Seconds a migrating stream waits for a worker to appear when none is left", DefaultValueFactory = _ => ProcessorOptions.Default.MigrationWaitTimeout.TotalSeconds };
    private readonly KvRouterFlags _kv;
    private readonly HttpServerFlags _http;

    private FrontendFlags(Command command, string? listenNote, bool withNamespace)
    {
        _port = new Option<int>("--http-port", "--port") { Description = "HTTP port" + listenNote, DefaultValueFactory = _ => FrontendOptions.Default.HttpPort };
        _host = new Option<string>("--http-host", "--host") { Description = "Address to listen on" + listenNote, DefaultValueFactory = _ => FrontendOptions.Default.Host };
        command.Options.Add(_port);
        command.Options.Add(_host);
        command.Options.Add(_routerMode);
        if (withNamespace)
        {
            _namespace = new Option<string>("--namespace") { Description = "Runtime namespace whose models are served", DefaultValueFactory = _ => ProcessorOptions.Default.Namespace };
            command.Options.Add(_namespace);
        }

        command.Options.Add(_jsonLogs);
        command.Options.Add(_shutdownDrain);
        command.Options.Add(_migrationLimit);
        command.Options.Add(_migrationWait);
        _admission = AdmissionFlags.AddTo(command);
        _kv = KvRouterFlags.AddTo(command);
        _http = HttpServerFlags.AddTo(command);
    }

    /// <summary>
    /// Adds the flags to <paramref name="command"/>: --http-port, --http-host (their descriptions ending in
    /// <paramref name="listenNote"/>), --router-mode, --namespace when <paramref name="withNamespace"/>,
    /// --json-logs, --shutdown-drain-timeout, --migration-limit, --migration-wait, the overload limits (<see cref="AdmissionFlags"/>), the KV router's and the HTTP server's (<see cref="HttpServerFlags"/>: limits, API keys, TLS).
    /// </summary>
    public static FrontendFlags AddTo(Command command, string? listenNote = null, bool withNamespace = false) => new(command, listenNote, withNamespace);

    /// <summary>The flags' values over <see cref="FrontendOptions.Default"/> (not validated yet).</summary>
    public FrontendOptions Read(ParseResult parse) => _http.Read(parse, FrontendOptions.Default) with
    {
        HttpPort = parse.GetValue(_port),
        Host = parse.GetValue(_host)!,
        JsonLogs = parse.GetValue(_jsonLogs),
        ShutdownDrainTimeout = Seconds(parse.GetValue(_shutdownDrain)),
        Processing = ProcessorOptions.Default with
        {
            Namespace = _namespace is null ? ProcessorOptions.Default.Namespace : parse.GetValue(_namespace)!,
            RouterMode = parse.GetValue(_routerMode)!,
            KvRouter = _kv.Read(parse),
            MigrationLimit = parse.GetValue(_migrationLimit),
            MigrationWaitTimeout = Seconds(parse.GetValue(_migrationWait)),
        },
        Admission = _admission.Read(parse),
    };

    /// <summary>Seconds as a time span; a value no time span holds (NaN, infinite, huge) as -1 s, which validation names.</summary>
    internal static TimeSpan Seconds(double seconds) =>
        double.IsFinite(seconds) && Math.Abs(seconds) < TimeSpan.MaxValue.TotalSeconds / 2 ? TimeSpan.FromSeconds(seconds) : TimeSpan.FromSeconds(-1);
}
