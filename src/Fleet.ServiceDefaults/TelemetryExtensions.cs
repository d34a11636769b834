using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Fleet.ServiceDefaults;

/// <summary>
/// OpenTelemetry for every Fleet host: traces across MassTransit, Npgsql, ASP.NET Core and Fleet's own sources;
/// metrics from the same plus the .NET runtime, served to Prometheus at <c>/metrics</c> and exported over OTLP when
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set. Health: <c>/alive</c> (the process answers) and <c>/health</c>
/// (checks tagged <c>ready</c>, e.g. the bus and the database).
/// </summary>
public static class TelemetryExtensions
{
    public const string ReadyTag = "ready";

    /// <param name="serviceName">The OpenTelemetry service name, e.g. <c>fleet-worker</c>.</param>
    /// <param name="sources">Fleet's own ActivitySource and Meter names for this host (e.g. <c>Fleet.Worker</c>).</param>
    public static IHostApplicationBuilder AddFleetTelemetry(this IHostApplicationBuilder builder, string serviceName, params string[] sources)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddHealthChecks();
        var exporting = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var samplerChosen = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_TRACES_SAMPLER"]);
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(serviceName, serviceInstanceId: $"{Environment.MachineName}:{Environment.ProcessId}"))
            .WithTracing(tracing => tracing
                .AddSource("MassTransit")
                .AddSource(sources)
                .AddNpgsql()
                .AddAspNetCoreInstrumentation(o => o.Filter = context => !IsInfrastructurePath(context.Request.Path)))
            .WithMetrics(metrics => metrics
                .AddMeter("MassTransit")
                .AddMeter(sources)
                .AddAspNetCoreInstrumentation()
                .AddRuntimeInstrumentation()
                .AddPrometheusExporter()
                .OwnMetersOnly());
        if (!exporting && !samplerChosen)
        {
            // With nowhere to send spans, record none: the activities still exist (the SDK keeps unsampled ones for
            // propagation), so trace ids still reach the logs and the next hop, but no span data is built per
            // message. OTEL_TRACES_SAMPLER, when set, decides instead (the SDK reads it), as it does when exporting.
            telemetry.WithTracing(tracing => tracing.SetSampler(new AlwaysOffSampler()));
        }

        if (exporting)
        {
            telemetry.UseOtlpExporter();
        }

        return builder;
    }

    /// <summary>
    /// Drops the instruments of meters that another host's <see cref="IMeterFactory"/> made. A meter provider listens
    /// to every meter of the process with a name it was given, and instruments of the same name are merged into one
    /// series, the last callback's value winning: with two hosts in one process (the integration tests run several
    /// APIs at once) each host's /metrics showed the other's gauges, and when the other host stopped, its disposed
    /// instruments retired the merged series, so every autoscaling gauge vanished from a running API's /metrics.
    /// Meters made without a factory (static ones, MassTransit's, the runtime's) have no owner and stay.
    /// </summary>
    private static MeterProviderBuilder OwnMetersOnly(this MeterProviderBuilder metrics)
    {
        if (metrics is IDeferredMeterProviderBuilder deferred)
        {
            deferred.Configure((services, builder) =>
            {
                var own = services.GetRequiredService<IMeterFactory>();
                builder.AddView(instrument => instrument.Meter.Scope is IMeterFactory owner && !ReferenceEquals(owner, own)
                    ? MetricStreamConfiguration.Drop
                    : null);
            });
        }

        return metrics;
    }

    /// <summary>Maps <c>/alive</c>, <c>/health</c> and <c>/metrics</c>.</summary>
    public static IEndpointRouteBuilder MapFleetDefaultEndpoints(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapHealthChecks("/alive", new HealthCheckOptions { Predicate = _ => false });
        endpoints.MapHealthChecks("/health", new HealthCheckOptions { Predicate = check => check.Tags.Contains(ReadyTag) || check.Tags.Contains("masstransit") });
        endpoints.MapFleetMetrics();
        return endpoints;
    }

    /// <summary>
    /// Maps the Prometheus scrape endpoint <c>/metrics</c> alone, for hosts that map their own health endpoints (the
    /// API); the returned builder lets them put it behind their read policy.
    /// </summary>
    public static IEndpointConventionBuilder MapFleetMetrics(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return endpoints.MapPrometheusScrapingEndpoint("/metrics");
    }

    private static bool IsInfrastructurePath(Microsoft.AspNetCore.Http.PathString path) =>
        path.StartsWithSegments("/metrics") || path.StartsWithSegments("/health") || path.StartsWithSegments("/alive");
}
