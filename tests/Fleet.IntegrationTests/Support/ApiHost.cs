using System.Collections.Concurrent;
using System.Net.Http.Headers;
using Fleet.Api;
using Fleet.ServiceDefaults;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// The real Fleet API in this process, composed exactly like <c>src/Fleet.Api/Program.cs</c> (AddServiceDefaults,
/// AddFleetApi, UseFleetApi, MapFleetApi), listening with Kestrel on a free 127.0.0.1 port, against the fixture's
/// database and broker. A real socket, so that anything that speaks HTTP (HttpClient, curl, a browser) can use it.
/// Only the given settings and the fixture's connection strings configure it: no environment variables, no
/// appsettings.json, so a developer's <c>.fleet/env</c> cannot leak in.
/// </summary>
public sealed class ApiHost : IAsyncDisposable
{
    /// <summary>The key every host accepts with the scopes read and write (<c>Api:ApiKeys:0</c>).</summary>
    public const string ApiKey = "it-key-6f1c0e7a9b2d4c3e8a5f";

    /// <summary>The key every host accepts with the scope read only (<c>Api:ReadKeys:0</c>).</summary>
    public const string ReadKey = "it-read-key-2d8e4b1f7a3c9e05";

    /// <summary>The key every host accepts with the scopes read, write and admin (<c>Api:AdminKeys:0</c>).</summary>
    public const string AdminKey = "it-admin-key-9c4a7e2b5d1f8306";

    private readonly WebApplication _app;

    private ApiHost(WebApplication app, Uri baseAddress, CapturingLoggerProvider logs)
    {
        _app = app;
        BaseAddress = baseAddress;
        Logs = logs;
    }

    /// <summary>http://127.0.0.1:PORT/</summary>
    public Uri BaseAddress { get; }

    public IServiceProvider Services => _app.Services;

    /// <summary>The host's real route table: every endpoint it maps, with its metadata (methods, authorization).</summary>
    public IReadOnlyList<RouteEndpoint> Endpoints =>
        [.. ((IEndpointRouteBuilder)_app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()];

    /// <summary>Every log line the host wrote, at every level (for checks that secrets are never logged).</summary>
    public CapturingLoggerProvider Logs { get; }

    /// <summary>The settings every test host gets; <paramref name="overrides"/> of <see cref="StartAsync"/> win.</summary>
    public static Dictionary<string, string?> DefaultSettings(FleetFixture fleet)
    {
        ArgumentNullException.ThrowIfNull(fleet);
        // The API's own logins (fleet_api in PostgreSQL and RabbitMQ on owned servers): every API test also shows its grants suffice.
        return DefaultSettings(fleet.ApiPostgresConnectionString, fleet.ApiAmqpUri, fleet.ApiManagementUri);
    }

    /// <summary>The settings every test host gets, against the given database, broker and management API.</summary>
    public static Dictionary<string, string?> DefaultSettings(string postgresConnectionString, string rabbitMqUri, Uri? rabbitMqManagementUri)
    {
        return new()
        {
            ["ConnectionStrings:fleetdb"] = postgresConnectionString,
            ["ConnectionStrings:rabbitmq"] = rabbitMqUri,
            ["Api:ApiKeys:0"] = ApiKey,
            ["Api:ReadKeys:0"] = ReadKey,
            ["Api:AdminKeys:0"] = AdminKey,
            ["Api:RabbitMqManagementUri"] = rabbitMqManagementUri?.ToString(),

            // Tests read fresh numbers: no caching. The relay tests shorten the relay's delays themselves.
            ["Api:RelayIntervalSeconds"] = "1",
            ["Api:StatsCacheSeconds"] = "0",
            ["Logging:LogLevel:Default"] = "Warning",
        };
    }

    /// <param name="fleet">The collection fixture: database and broker.</param>
    /// <param name="overrides">Settings over <see cref="DefaultSettings"/> (a null value removes one).</param>
    /// <param name="configureServices">Runs after AddFleetApi, to replace services (for example the publisher).</param>
    public static Task<ApiHost> StartAsync(
        FleetFixture fleet, IDictionary<string, string?>? overrides = null, Action<IServiceCollection>? configureServices = null) =>
        StartAsync(DefaultSettings(fleet), overrides, configureServices);

    /// <param name="settings">All settings (<see cref="DefaultSettings(string, string, Uri?)"/> for another fixture's servers).</param>
    /// <param name="overrides">Settings over <paramref name="settings"/> (a null value removes one).</param>
    /// <param name="configureServices">Runs after AddFleetApi, to replace services.</param>
    public static async Task<ApiHost> StartAsync(
        Dictionary<string, string?> settings, IDictionary<string, string?>? overrides = null, Action<IServiceCollection>? configureServices = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = "Production",
        });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddInMemoryCollection(settings.Where(s => s.Value is not null));
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.AddServiceDefaults();
        var logs = new CapturingLoggerProvider();
        builder.Logging.AddProvider(logs);
        builder.AddFleetApi();
        configureServices?.Invoke(builder.Services);

        var app = builder.Build();
        app.UseFleetApi();
        app.MapFleetApi();
        try
        {
            await app.StartAsync().ConfigureAwait(false);
        }
        catch
        {
            // A start that failed midway leaves the hosted services it had started running (relays, schedules): they
            // must not go on working on the fixture's database under the next tests.
            await app.StopAsync().ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        // Port 0: Kestrel picked a free port; the bound address is known once it listens.
        var address = app.Urls.Single();
        return new ApiHost(app, new Uri(address.TrimEnd('/') + "/"), logs);
    }

    /// <summary>An HttpClient for this host, sending <paramref name="apiKey"/> as a Bearer token (none when null).</summary>
    public HttpClient CreateClient(string? apiKey = ApiKey)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        if (apiKey is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Keeps every log message (with its exception text) in memory, at every level.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines;

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
        {
            lines.Enqueue($"{category} scope: {state}");
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}
