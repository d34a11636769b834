using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Fleet.ServiceDefaults;

/// <summary>Host setup shared by every Fleet process.</summary>
public static class HostingExtensions
{
    /// <summary>
    /// Console logs, one line per event with a UTC timestamp (or JSON when <c>Logging:Format</c> is <c>json</c>, for
    /// log shippers); the defaults work on empty configuration.
    /// </summary>
    public static IHostApplicationBuilder AddServiceDefaults(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Logging.ClearProviders();
        if (string.Equals(builder.Configuration["Logging:Format"], "json", StringComparison.OrdinalIgnoreCase))
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.IncludeScopes = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });

            // Every line written inside a traced operation (a request, a task's consume) carries its TraceId and
            // SpanId as a scope, so a log shipper can join log lines to traces and one task's lines across processes.
            // Host.CreateDefaultBuilder sets this too, but hosts built without defaults (tests, tools) would not.
            builder.Logging.Configure(o => o.ActivityTrackingOptions =
                ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.ColorBehavior = LoggerColorBehavior.Disabled;
            });
        }

        // MassTransit logs every consumer fault at Error, which we also log with the task id; keep its noise down.
        builder.Logging.AddFilter("MassTransit", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
        return builder;
    }
}
