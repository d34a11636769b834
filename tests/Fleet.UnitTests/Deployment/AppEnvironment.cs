using Fleet.Api;
using Fleet.Client;
using Fleet.Client.Tls;
using Fleet.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// The environment a deployment file gives a process, checked the way the process reads it: every
/// <c>Section__Key</c> must name a real setting (the options classes bound with unknown keys as errors), and the
/// worker and the API are built (not started) from it, so their options validation runs on the deployed values.
/// </summary>
public static class AppEnvironment
{
    /// <summary>Variables read by name (ASP.NET Core, OpenTelemetry) rather than as configuration keys.</summary>
    private static readonly string[] PlainVariables = ["ASPNETCORE_URLS", "ASPNETCORE_HTTP_PORTS", "OTEL_EXPORTER_OTLP_ENDPOINT"];

    /// <summary>Checks the keys, builds the worker, and returns its options and its host's shutdown timeout.</summary>
    public static (WorkerOptions Worker, TimeSpan ShutdownTimeout) Worker(IReadOnlyDictionary<string, string> environment, string where)
    {
        var configuration = CheckKeys(FleetApp.Worker, environment, where);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddConfiguration(configuration);
        builder.AddFleetWorker();
        using var host = builder.Build();
        return (host.Services.GetRequiredService<IOptions<WorkerOptions>>().Value, host.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout);
    }

    public static ApiOptions Api(IReadOnlyDictionary<string, string> environment, string where)
    {
        var configuration = CheckKeys(FleetApp.Api, environment, where);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddConfiguration(configuration);
        builder.AddFleetApi();
        using var host = builder.Build();
        return host.Services.GetRequiredService<IOptions<ApiOptions>>().Value;
    }

    /// <summary><c>fleet migrate</c> reads one setting: the database's connection string.</summary>
    public static NpgsqlConnectionStringBuilder Migrator(IReadOnlyDictionary<string, string> environment, string where)
    {
        var configuration = CheckKeys(FleetApp.Migrator, environment, where);
        var connectionString = configuration.GetConnectionString("fleetdb");
        Assert.False(string.IsNullOrWhiteSpace(connectionString), $"{where}: the migrator has no ConnectionStrings__fleetdb");
        return new NpgsqlConnectionStringBuilder(connectionString);
    }

    /// <summary>The lanes' queue type a process gets from this environment (the default when it says nothing).</summary>
    public static BrokerQueueType QueueType(IReadOnlyDictionary<string, string> environment) =>
        QueueTopology.ParseQueueType(environment.GetValueOrDefault("RabbitMq__QueueType"));

    /// <summary>Fails on a variable the process would not read; returns the variables as configuration (<c>__</c> = <c>:</c>).</summary>
    public static IConfiguration CheckKeys(FleetApp app, IReadOnlyDictionary<string, string> environment, string where)
    {
        var sections = app == FleetApp.Worker ? new[] { "ConnectionStrings", "Logging", "RabbitMq", WorkerOptions.SectionName, FleetTlsOptions.SectionName }
            : app == FleetApp.Api ? ["ConnectionStrings", "Logging", "RabbitMq", ApiOptions.SectionName, FleetTlsOptions.SectionName]
            : ["ConnectionStrings", FleetTlsOptions.SectionName];
        string[] connectionStrings = app == FleetApp.Migrator ? ["fleetdb"] : ["fleetdb", "rabbitmq"];
        foreach (var key in environment.Keys)
        {
            if (!key.Contains("__", StringComparison.Ordinal))
            {
                Assert.True(app != FleetApp.Migrator && PlainVariables.Contains(key), $"{where}: {key} is not a setting of the {app.Name}");
                continue;
            }

            var path = key.Split("__");
            Assert.True(sections.Contains(path[0]), $"{where}: {key}: the {app.Name} has no section '{path[0]}'");
            if (path[0] == "ConnectionStrings")
            {
                Assert.True(path.Length == 2 && connectionStrings.Contains(path[1]), $"{where}: {key}: the {app.Name} reads no such connection string");
            }

            if (path[0] == "RabbitMq")
            {
                // The one setting of the section; its value must parse, as the process parses it at start.
                Assert.True(path is ["RabbitMq", "QueueType"], $"{where}: {key} is not a RabbitMQ setting (RabbitMq__QueueType)");
                var value = environment[key];
                Assert.Null(Record.Exception(() => QueueTopology.ParseQueueType(value)));
            }

            if (path[0] == "Logging")
            {
                Assert.True(path is ["Logging", "Format"] or ["Logging", "LogLevel", _], $"{where}: {key} is not a logging setting (Logging__Format, Logging__LogLevel__<category>)");
            }
        }

        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(environment.Where(e => e.Key.Contains("__", StringComparison.Ordinal))
                .Select(e => KeyValuePair.Create(e.Key.Replace("__", ":", StringComparison.Ordinal), (string?)e.Value)))
            .Build();

        // The binder names any key that matches no property, at any depth (Worker__HttpGet__AllowedHosts__0 included).
        var unknown = Record.Exception(() =>
        {
            if (app == FleetApp.Worker)
            {
                configuration.GetSection(WorkerOptions.SectionName).Get<WorkerOptions>(o => o.ErrorOnUnknownConfiguration = true);
            }
            else if (app == FleetApp.Api)
            {
                configuration.GetSection(ApiOptions.SectionName).Get<ApiOptions>(o => o.ErrorOnUnknownConfiguration = true);
            }

            // Every process binds the Tls section (the CLI as well).
            configuration.GetSection(FleetTlsOptions.SectionName).Get<FleetTlsOptions>(o => o.ErrorOnUnknownConfiguration = true);
        });
        Assert.True(unknown is null, $"{where}: {unknown?.Message}");

        // The database connection would pass the start-time TLS check (verified, explicitly plain, or allowed).
        var tls = configuration.GetSection(FleetTlsOptions.SectionName).Get<FleetTlsOptions>() ?? new FleetTlsOptions();
        var problem = configuration.GetConnectionString("fleetdb") is { Length: > 0 } fleetdb ? tls.PostgresProblem(fleetdb) : null;
        Assert.True(problem is null, $"{where}: the {app.Name} would refuse to start: {problem}");
        return configuration;
    }
}
