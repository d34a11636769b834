using System.Text.Json;
using System.Text.Json.Serialization;
using Fleet.Api.Autoscaling;
using Fleet.Api.DeadLetters;
using Fleet.Api.Limits;
using Fleet.Api.Monitoring;
using Fleet.Api.Queries;
using Fleet.Api.Queues;
using Fleet.Api.Relay;
using Fleet.Api.Retention;
using Fleet.Api.Requeue;
using Fleet.Api.Scheduling;
using Fleet.Api.Security;
using Fleet.Api.Submission;
using Fleet.Client;
using Fleet.Messaging;
using Fleet.Persistence;
using Fleet.Persistence.Limits;
using Fleet.ServiceDefaults;
using Fleet.Tasks;
using MassTransit;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Api;

public static class ApiHostingExtensions
{
    /// <summary>
    /// Everything the API process needs: the <c>Api</c> options (validated at start), the database, the broker
    /// (MassTransit, send only), the shared <see cref="TaskSubmitter"/> and its outbox relay, API-key
    /// authentication, problem details, health checks, OpenTelemetry (traces, <c>/metrics</c> with the autoscaling
    /// signal) and the OpenAPI document.
    /// </summary>
    public static IHostApplicationBuilder AddFleetApi(this IHostApplicationBuilder builder, Action<ApiOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;

        // First, so that a connection the Tls settings forbid stops the start before anything connects.
        builder.AddFleetTls();
        services.AddOptions<ApiOptions>()
            .BindConfiguration(ApiOptions.SectionName)
            .Configure(o => configure?.Invoke(o))
            .ValidateDataAnnotations()
            .ValidateOnStart();
        var broker = builder.Configuration.GetRabbitMqAddress();
        builder.AddFleetDatabase();

        // The built-in handlers are registered only to learn their names and lanes; the API runs none of them.
        services.AddFleetTasks();
        services.AddSingleton<TaskTypeCatalog>();
        services.AddSingleton(sp => QueueCatalog.Of(sp.GetRequiredService<IOptions<ApiOptions>>().Value.Queues));

        // The first hosted service: a declared queue the broker lacks stops the start before any relay, dispatcher or
        // schedule has begun to work.
        services.AddHostedService(sp => new QueueDeclarationService(
            sp.GetRequiredService<QueueCatalog>(), sp.GetRequiredService<NpgsqlDataSource>(), broker, sp.GetRequiredService<ILogger<QueueDeclarationService>>()));
        services.AddSingleton<TaskRequestReader>();
        services.AddSingleton<TaskQueries>();
        services.AddSingleton<TaskCanceller>();
        services.AddSingleton<WorkerQueries>();
        services.AddSingleton<MonitoringQueries>();
        services.AddSingleton<StatsService>();

        // The clock of the stats windows. Keyed, so that a test's fake clock moves the windows and stops no other
        // timer of the host.
        services.TryAddKeyedSingleton(StatsService.ClockKey, TimeProvider.System);

        // The autoscaling signal (fleet_desired_workers and its inputs) on /metrics, sampled in the background.
        services.AddOptions<AutoscaleOptions>()
            .BindConfiguration(AutoscaleOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<AutoscaleSampler>();
        services.AddHostedService(sp => sp.GetRequiredService<AutoscaleSampler>());
        services.AddSingleton<WaitingTasksSampler>();
        services.AddHostedService(sp => sp.GetRequiredService<WaitingTasksSampler>());
        builder.AddFleetTelemetry("fleet-api", AutoscaleSampler.MeterName, ClientTelemetry.Name);
        // An https:// management URI gets the broker's certificate check (Tls section), not the HttpClient default.
        services.AddHttpClient(RabbitMqManagementClient.HttpClientName, http => http.Timeout = TimeSpan.FromSeconds(3))
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = broker.Certificates.For("The RabbitMQ management API") },
            });
        services.AddSingleton(sp => new RabbitMqManagementClient(
            sp.GetRequiredService<IHttpClientFactory>(), sp.GetRequiredService<IOptions<ApiOptions>>().Value.RabbitMqManagementUri, broker));

        // One submission pipeline for the API and FleetClient. The publisher is replaceable (TryAdd), which is how the
        // crash tests cut the pipeline between commit and confirm.
        services.TryAddSingleton<ITaskPublisher>(_ => new RabbitMqTaskPublisher(broker, $"fleet-api-publisher {Environment.MachineName}:{Environment.ProcessId}"));
        services.AddSingleton(sp =>
        {
            var api = sp.GetRequiredService<IOptions<ApiOptions>>().Value;
            var submitterOptions = new TaskSubmitterOptions { ChunkSize = 5_000, PublishTimeout = TimeSpan.FromSeconds(api.PublishTimeoutSeconds) };
            submitterOptions.CpuTypes.Clear();
            submitterOptions.CpuTypes.UnionWith(sp.GetRequiredService<TaskTypeCatalog>().CpuTypes);
            return submitterOptions;
        });
        services.AddSingleton(sp => new TaskSubmitter(
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<ITaskPublisher>(), sp.GetRequiredService<TaskSubmitterOptions>(),
            sp.GetRequiredService<ILogger<TaskSubmitter>>()));
        services.AddSingleton(sp => new OutboxRelay(
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<ITaskPublisher>(), sp.GetRequiredService<TaskSubmitterOptions>(),
            sp.GetRequiredService<ILogger<OutboxRelay>>()));
        services.AddSingleton<RetentionService>();
        services.AddHostedService<OutboxRelayService>();
        services.AddHostedService<DueRelayService>();
        services.AddFleetDispatcher(sp => sp.GetRequiredService<NpgsqlDataSource>(), sp => sp.GetRequiredService<ITaskPublisher>());
        services.AddHostedService<DispatchService>();
        services.AddFleetBatchWatcher(sp => sp.GetRequiredService<NpgsqlDataSource>(), sp => sp.GetRequiredService<ITaskPublisher>());
        services.AddHostedService<BatchWatchService>();
        services.AddFleetSchedules();
        services.AddFleetRetention();
        services.AddSingleton(sp => new QueuePauses(sp.GetRequiredService<NpgsqlDataSource>()));
        services.AddSingleton<LimitStore>();
        services.AddSingleton(new DeadLetterQueues(broker, $"fleet-api-dead-letters {Environment.MachineName}:{Environment.ProcessId}"));
        services.AddFleetRequeue();

        services.AddMassTransit(x =>
        {
            // MassTransit 8.4+ reports usage to its vendor over the internet by default; a worker fleet sends nothing
            // anywhere it was not told to. Only an explicit MASSTRANSIT_USAGE_TELEMETRY=true turns it back on.
            x.DisableUsageTelemetry();
            // "Broker reachable" is part of readiness: the bus check is tagged like the database check.
            x.ConfigureHealthCheckOptions(health =>
            {
                health.Name = "broker";
                health.Tags.Add("ready");
                health.MinimalFailureStatus = HealthStatus.Unhealthy;
            });
            x.UsingRabbitMq((_, cfg) => cfg.UseFleetHost(broker, $"fleet-api {Environment.MachineName}:{Environment.ProcessId}"));
        });

        services.AddProblemDetails();
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        // One policy per scope, named like it: the route's policy is the scope its key must hold.
        var authorization = services.AddAuthorizationBuilder();
        foreach (var scope in ApiScopes.All)
        {
            authorization.AddPolicy(scope, policy => policy.AddAuthenticationSchemes(ApiKeyAuthenticationHandler.SchemeName)
                .RequireAuthenticatedUser()
                .RequireClaim(ApiScopes.Claim, scope));
        }

        services.AddSingleton<IAuthorizationMiddlewareResultHandler, ScopeForbiddenHandler>();
        services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database", tags: ["ready"]);
        // Numbers are numbers: the request reader refuses "5" for 5, and the OpenAPI document should say the same.
        services.ConfigureHttpJsonOptions(json => json.SerializerOptions.NumberHandling = JsonNumberHandling.Strict);
        services.AddFleetOpenApi();
        return builder;
    }

    /// <summary>The middleware, in order: errors as problem details, the dashboard's files, then API keys.</summary>
    public static WebApplication UseFleetApi(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseExceptionHandler();
        app.UseStatusCodePages();

        // "/" serves wwwroot/index.html, the dashboard; its files are public like /health.
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.UseAuthentication();
        app.UseAuthorization();
        return app;
    }

    /// <summary>Every endpoint (the routes of docs/http-api.md): tasks, batches, workers, stats, metrics, health and the OpenAPI document.</summary>
    public static WebApplication MapFleetApi(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var api = app.Services.GetRequiredService<IOptions<ApiOptions>>().Value;

        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Tasks").MapSubmissions();
        app.MapGroup("").RequireAuthorization(ApiScopes.Admin).WithTags("Tasks").MapCancel();
        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Schedules").MapScheduleWrites();
        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Limits").MapLimitWrites();
        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Dead letters").MapDeadLetterWrites();
        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Tasks").MapRequeue();
        app.MapGroup("").RequireAuthorization(ApiScopes.Write).WithTags("Queues").MapQueueWrites();

        // Reads show every payload and result: behind the read scope unless Api:ReadsRequireKey is explicitly false.
        var reads = app.MapGroup("").WithTags("Reads");
        if (api.ReadsRequireKey)
        {
            reads.RequireAuthorization(ApiScopes.Read);
        }

        reads.MapReads();
        reads.MapScheduleReads();
        reads.MapLimitReads();
        reads.MapDeadLetterReads();
        reads.MapQueueReads();

        // /metrics shows what /stats shows (queue depths, counts), so it follows the same rule (Prometheus sends a
        // read key as a bearer token).
        var metrics = app.MapFleetMetrics().ExcludeFromDescription();
        if (api.ReadsRequireKey)
        {
            metrics.RequireAuthorization(ApiScopes.Read);
        }

        // /health: ready to serve (PostgreSQL and RabbitMQ answer). /alive: the process answers, nothing more, so
        // a restart policy never kills the API for a database outage.
        app.MapHealthChecks("/health", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready"), ResponseWriter = WriteHealthAsync });
        app.MapHealthChecks("/alive", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealthAsync });
        app.MapOpenApi();
        return app;
    }

    private static Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, new
        {
            status = report.Status.ToString(),
            checks = report.Entries.Select(e => new { name = e.Key, status = e.Value.Status.ToString(), description = e.Value.Description }),
        }, cancellationToken: context.RequestAborted);
    }
}
