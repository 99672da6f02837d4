using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Dynamo.Components.Registry;
using Dynamo.Frontend.Http;
using Dynamo.Frontend.Observability;
using Dynamo.Frontend.WebUi;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Dynamo.Frontend;

/// <summary>
/// The OpenAI-compatible HTTP frontend (see README.md): serves the models whose workers publish model
/// cards in the runtime's discovery under <see cref="Components.Processing.ProcessorOptions.Namespace"/>, on Kestrel.
/// </summary>
public sealed partial class FrontendServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ModelRegistry _registry;
    private readonly OpenAiHandler _handler;
    private readonly FrontendOptions _options;
    private readonly ILogger _logger;
    private readonly ILoggerFactory? _ownedLoggerFactory;
    private readonly CancellationTokenSource _shutdown;
    private readonly ServerCertificate? _certificate;
    private readonly IDisposable _rejections;
    private readonly FrontendMetrics _metrics;
    private readonly StatusSampler? _status;
    private int _shuttingDown;

    private FrontendServer(WebApplication app, ModelRegistry registry, OpenAiHandler handler, FrontendMetrics metrics, FrontendOptions options, ILogger logger, ILoggerFactory? ownedLoggerFactory, CancellationTokenSource shutdown, Uri baseAddress, ServerCertificate? certificate, int apiKeys, IDisposable rejections, StatusSampler? status)
    {
        _status = status;
        _metrics = metrics;
        _app = app;
        _registry = registry;
        _handler = handler;
        _options = options;
        _logger = logger;
        _ownedLoggerFactory = ownedLoggerFactory;
        _shutdown = shutdown;
        _certificate = certificate;
        _rejections = rejections;
        BaseAddress = baseAddress;
        ApiKeyCount = apiKeys;
    }

    /// <summary>The bound address, e.g. http://127.0.0.1:8000 (loopback when listening on every interface; https with a TLS certificate).</summary>
    public Uri BaseAddress { get; }

    /// <summary>How many API keys requests may carry (0: none is required).</summary>
    public int ApiKeyCount { get; }

    /// <summary>What a startup line says about access: "API key required (N keys)" or "no API key required"; never a key.</summary>
    public string AccessNote => ApiKeyCount == 0 ? "no API key required"
        : $"API key required ({ApiKeyCount} key{(ApiKeyCount == 1 ? "" : "s")}; /health and /live open, /metrics {(_options.MetricsRequireApiKey ? "needs a key" : "open")})";

    /// <summary>The model names served now.</summary>
    public IReadOnlyList<string> Models => [.. _registry.Models.Keys.Order(StringComparer.Ordinal)];

    /// <summary>The served models and their endpoints' routers (tests look at a router's view).</summary>
    internal ModelRegistry Registry => _registry;

    /// <summary>
    /// Starts the registry (returns after the existing model cards are read) and Kestrel. Without a
    /// <paramref name="loggerFactory"/>, logs go to the console (JSON lines with <see cref="FrontendOptions.JsonLogs"/>).
    /// </summary>
    public static async Task<FrontendServer> StartAsync(DistributedRuntime runtime, FrontendOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ILoggerFactory? owned = null;
        if (loggerFactory is null)
        {
            owned = LoggerFactory.Create(b =>
            {
                if (options.JsonLogs)
                {
                    b.AddJsonConsole(o => o.JsonWriterOptions = new JsonWriterOptions { Indented = false });
                }
                else
                {
                    b.AddSimpleConsole(o =>
                    {
                        o.SingleLine = true;
                        o.TimestampFormat = "HH:mm:ss.fff ";
                    });
                }
            });
            loggerFactory = owned;
        }

        ILogger logger = loggerFactory.CreateLogger("Dynamo.Frontend");
        ModelRegistry? registry = null;
        WebApplication? app = null;
        ServerCertificate? certificate = null;
        IDisposable? rejections = null;
        StatusSampler? status = null;
        var shutdown = new CancellationTokenSource();
        try
        {
            registry = await ModelRegistry.StartAsync(runtime, options.Processing, logger, cancellationToken).ConfigureAwait(false);
            _ = await registry.ProcessorsAsync().ConfigureAwait(false); // follow Processor components from the start
            var metrics = new FrontendMetrics();
            metrics.ObserveRouters(registry);
            FrontendServer? server = null;
            var handler = new OpenAiHandler(registry, metrics, options, logger, () => server is null || server._shuttingDown != 0, shutdown.Token);

            ApiKeyAuthenticator? keys = ApiKeyAuthenticator.FromOptions(options);
            certificate = ServerCertificate.Load(options.TlsCertificateFile, options.TlsKeyFile);
            WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(FrontendServer).Assembly.GetName().Name });
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => ConfigureKestrel(k, options, certificate));
            app = builder.Build();
            rejections = KestrelRejections.Subscribe(app.Services.GetRequiredService<DiagnosticListener>());
            app.Use((context, next) => ErrorResponses.InvokeAsync(context, next, logger));
            if (keys is not null)
            {
                app.Use(keys.InvokeAsync);
            }

            Route[] routes =
            [
                new("/v1/chat/completions", HttpMethods.Post, handler.ChatCompletionsAsync),
                new("/v1/completions", HttpMethods.Post, handler.CompletionsAsync),
                new("/v1/models", HttpMethods.Get, context => ModelsAsync(context, registry)),
                new("/v1/models/{**id}", HttpMethods.Get, context => ModelAsync(context, registry)),
                new("/live", HttpMethods.Get, context => LiveAsync(context, server)),
                new("/health", HttpMethods.Get, context => HealthAsync(context, registry, runtime.Requests)),
                new("/metrics", HttpMethods.Get, context => MetricsAsync(context, metrics)),
            ];
            if (options.WebUi)
            {
                status = new StatusSampler(metrics.Totals, registry.Routing);
                StatusSampler sampler = status;
                routes =
                [
                    .. routes,
                    new("/", HttpMethods.Get, WebUiEndpoints.PageAsync),
                    new(WebUiEndpoints.StatusPath, HttpMethods.Get, context => WebUiEndpoints.StatusAsync(context, registry, sampler)),
                ];
            }

            foreach (Route route in routes)
            {
                app.MapMethods(route.Path, [route.Method], route.Handler);
            }

            app.MapFallback((RequestDelegate)(context => OpenAiHandler.WriteErrorAsync(context.Response, NoRoute(context, routes), context.RequestAborted)));

            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            var uri = new Uri(bound.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
            server = new FrontendServer(app, registry, handler, metrics, options, logger, owned, shutdown, new Uri($"{(certificate is null ? "http" : "https")}://{uri.Host}:{uri.Port}"), certificate, keys?.Count ?? 0, rejections, status);
            Log.Listening(logger, DescribeBinding(bound, options.Host, server.BaseAddress), options.Processing.Namespace, options.Processing.RouterMode, server.AccessNote);
            return server;
        }
        catch
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }

            if (registry is not null)
            {
                await registry.DisposeAsync().ConfigureAwait(false);
            }

            rejections?.Dispose();
            if (status is not null)
            {
                await status.DisposeAsync().ConfigureAwait(false);
            }

            shutdown.Dispose();
            certificate?.Dispose();
            owned?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Serves <paramref name="worker"/>'s metrics (<c>dynamo_component_*</c>, as on a worker's system port) on this
    /// frontend's <c>/metrics</c> too: <c>dynamo run</c>'s worker runs in this process and has no port of its own.
    /// </summary>
    public void AddWorkerMetrics(Components.Workers.EngineWorker worker, string modelName)
    {
        ArgumentNullException.ThrowIfNull(worker);
        ArgumentNullException.ThrowIfNull(modelName);
        _metrics.ObserveWorker(worker, modelName);
    }

    /// <summary>Waits until <paramref name="name"/> is served (by at least <paramref name="instances"/> instances, all of them routable) and its tokenizer is loaded.</summary>
    public Task WaitForModelAsync(string name, CancellationToken cancellationToken = default, int instances = 1)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _registry.WaitForModelAsync(name, cancellationToken, instances);
    }

    /// <summary>
    /// Shuts down: /live and new requests answer 503 at once; in-flight requests may finish for
    /// <see cref="FrontendOptions.ShutdownDrainTimeout"/>, then their streams end (an error event and
    /// [DONE]); then Kestrel stops.
    /// </summary>
    public ValueTask DisposeAsync() => ShutdownAsync(CancellationToken.None);

    /// <summary>
    /// <see cref="DisposeAsync"/>, whose drain <paramref name="force"/> ends at once (a second signal): the streams still
    /// in flight then end as they do past the drain timeout. Later calls (and disposal) do nothing.
    /// </summary>
    public async ValueTask ShutdownAsync(CancellationToken force)
    {
        if (Interlocked.Exchange(ref _shuttingDown, 1) != 0)
        {
            return;
        }

        Log.ShuttingDown(_logger, _handler.Inflight);
        var deadline = DateTime.UtcNow + _options.ShutdownDrainTimeout;
        while (_handler.Inflight > 0 && DateTime.UtcNow < deadline && !force.IsCancellationRequested)
        {
            await Task.Delay(20, CancellationToken.None).ConfigureAwait(false);
        }

        await _shutdown.CancelAsync().ConfigureAwait(false);
        using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            await _app.StopAsync(stop.Token).ConfigureAwait(false);
        }

        await _app.DisposeAsync().ConfigureAwait(false);
        _rejections.Dispose();
        if (_status is not null)
        {
            await _status.DisposeAsync().ConfigureAwait(false);
        }

        await _registry.DisposeAsync().ConfigureAwait(false);
        _shutdown.Dispose();
        _certificate?.Dispose();
        _ownedLoggerFactory?.Dispose();
    }

    /// <summary>
    /// Kestrel's limits, timeouts and listening address from the options; HTTPS with a certificate; Kestrel's own
    /// refusals answered with an OpenAI error body (<see cref="KestrelRejections"/>, after TLS).
    /// </summary>
    private static void ConfigureKestrel(KestrelServerOptions k, FrontendOptions options, ServerCertificate? certificate)
    {
        k.AddServerHeader = false;
        k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
        k.Limits.MaxRequestHeadersTotalSize = options.MaxRequestHeaderBytes;
        k.Limits.MaxRequestHeaderCount = options.MaxRequestHeaderCount;
        k.Limits.Http2.MaxRequestHeaderFieldSize = options.MaxRequestHeaderBytes; // HTTPS negotiates HTTP/2: one field may be as large as all of them over HTTP/1.1
        k.Limits.MaxRequestLineSize = options.MaxRequestLineBytes;
        k.Limits.RequestHeadersTimeout = options.RequestHeadersTimeout;
        k.Limits.MinRequestBodyDataRate = options.MinRequestBodyBytesPerSecond > 0
            ? new MinDataRate(options.MinRequestBodyBytesPerSecond, options.MinRequestBodyRateGracePeriod)
            : null;
        Action<ListenOptions> listen = l =>
        {
            if (certificate is not null)
            {
                l.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = certificate.Certificate, ServerCertificateChain = certificate.Chain });
            }

            l.Use(KestrelRejections.Middleware);
        };
        if (options.Host is "0.0.0.0" or "*" or "+")
        {
            k.ListenAnyIP(options.HttpPort, listen);
        }
        else
        {
            IPAddress address = options.Host == "localhost" ? IPAddress.Loopback
                : IPAddress.TryParse(options.Host, out IPAddress? parsed) ? parsed
                : Dns.GetHostAddresses(options.Host)[0];
            k.Listen(address, options.HttpPort, listen);
        }
    }

    /// <summary>
    /// Where Kestrel really listens, as the startup log says it: <c>http://0.0.0.0:8000 (every interface; from this
    /// host http://127.0.0.1:8000/)</c> for any-address binds (Kestrel's <c>[::]</c> dual-stack bind of a 0.0.0.0 host
    /// named as the user wrote it), <c>http://127.0.0.1:8000 (this host only)</c> on loopback, else the address alone.
    /// </summary>
    internal static string DescribeBinding(string bound, string host, Uri reachable)
    {
        var uri = new Uri(bound);
        string address = uri.Host.Trim('[', ']');
        bool any = address is "0.0.0.0" or "::";
        string shown = any && host is "0.0.0.0" or "*" or "+" ? $"{uri.Scheme}://0.0.0.0:{uri.Port}" : $"{uri.Scheme}://{uri.Authority}";
        return any ? $"{shown} (every interface; from this host {reachable})"
            : IPAddress.TryParse(address, out IPAddress? ip) && IPAddress.IsLoopback(ip) ? $"{shown} (this host only)"
            : shown;
    }

    /// <summary>A request no route takes: 405 (with Allow) on a known path, else 404.</summary>
    private static OpenAiException NoRoute(HttpContext context, Route[] routes)
    {
        string path = context.Request.Path.Value?.TrimEnd('/') ?? "";
        string[] allowed = [.. routes.Where(r => string.Equals(r.Path, path, StringComparison.OrdinalIgnoreCase)).Select(r => r.Method)];
        if (allowed.Length == 0)
        {
            return ErrorResponses.ForStatus(StatusCodes.Status404NotFound, context.Request);
        }

        context.Response.Headers.Allow = string.Join(", ", allowed);
        return ErrorResponses.ForStatus(StatusCodes.Status405MethodNotAllowed, context.Request);
    }

    private static async Task MetricsAsync(HttpContext context, FrontendMetrics metrics)
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await metrics.ExportAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
    }

    private static Task LiveAsync(HttpContext context, FrontendServer? server)
    {
        bool live = server is not null && server._shuttingDown == 0;
        context.Response.StatusCode = live ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(live ? "{\"status\":\"live\"}" : "{\"status\":\"shutting_down\"}", context.RequestAborted);
    }

    private static Task ModelsAsync(HttpContext context, ModelRegistry registry)
    {
        var list = new ModelList
        {
            Data = [.. registry.Models.Values.OrderBy(m => m.Name, StringComparer.Ordinal)
                .Select(m => new ModelObject { Id = m.Name, Created = m.State.CreatedUnixSeconds })],
        };
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, list, OpenAiJsonContext.Default.ModelList, context.RequestAborted);
    }

    /// <summary>GET /v1/models/{id} (the OpenAI SDKs' models.retrieve): one model object, or a 404 model_not_found error. An id may hold slashes.</summary>
    private static Task ModelAsync(HttpContext context, ModelRegistry registry)
    {
        // Routing decodes every escape but %2F, which the .NET SDK sends for the slash of "org/name" (Python's sends "/").
        string id = (context.Request.RouteValues["id"] as string ?? "").Replace("%2F", "/", StringComparison.OrdinalIgnoreCase);
        if (registry.Find(id) is not { } model)
        {
            return OpenAiHandler.WriteErrorAsync(context.Response, OpenAiException.ModelNotFound(id), context.RequestAborted);
        }

        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, new ModelObject { Id = model.Name, Created = model.State.CreatedUnixSeconds }, OpenAiJsonContext.Default.ModelObject, context.RequestAborted);
    }

    private static Task HealthAsync(HttpContext context, ModelRegistry registry, IRequestPlane requests)
    {
        var models = registry.Models.Values.OrderBy(m => m.Name, StringComparer.Ordinal).ToArray();
        EndpointClient[] clients = [.. registry.Clients.OrderBy(c => c.Address.ToString(), StringComparer.Ordinal)];
        RequestPlaneHealth plane = requests.Health;
        string? reason = !plane.IsConnected ? $"request plane unavailable: {plane.Reason}"
            : models.Length == 0 ? "no worker serves any model"
            : null;
        var health = new HealthResponse
        {
            Status = reason is null ? "healthy" : "unhealthy",
            Reason = reason,
            RequestPlane = new HealthRequestPlane(requests.Name, plane.IsConnected, plane.DisconnectedSince),
            Models = [.. models.Select(m => new HealthModel(m.Name, [.. m.Instances.Select(i => EndpointAddress.FormatId(i.InstanceId))]))],
            Endpoints = [.. clients.Select(c => c.Address.ToString())],
            Instances = [.. clients.SelectMany(c =>
            {
                var available = c.AvailableInstances.Select(r => r.InstanceId).ToHashSet();
                return c.Instances.Select(r => new HealthInstance(c.Address.ToString(), EndpointAddress.FormatId(r.InstanceId), r.Host ?? "", available.Contains(r.InstanceId)));
            })],
        };
        context.Response.StatusCode = reason is null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, health, FrontendJsonContext.Default.HealthResponse, context.RequestAborted);
    }

    /// <summary>One route: path, method and handler.</summary>
    private readonly record struct Route(string Path, string Method, RequestDelegate Handler);

    private static partial class Log
    {
        [LoggerMessage(EventId = 5201, Level = LogLevel.Information, Message = "Frontend listening on {Binding}; namespace {Namespace}, router {RouterMode}; {Access}")]
        public static partial void Listening(ILogger logger, string binding, string @namespace, string routerMode, string access);

        [LoggerMessage(EventId = 5203, Level = LogLevel.Information, Message = "Frontend shutting down ({Inflight} requests in flight)")]
        public static partial void ShuttingDown(ILogger logger, int inflight);
    }
}
