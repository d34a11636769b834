using Fleet.Api;
using Fleet.Worker;
using MassTransit;
using MassTransit.UsageTracking;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>
/// MassTransit reports usage telemetry to its vendor (usage-tracking.masstransit.io) unless told not to. Every host
/// that runs a bus, the worker and the API, turns it off; only an explicit MASSTRANSIT_USAGE_TELEMETRY=true would
/// turn it on.
/// </summary>
public sealed class UsageTelemetryTests
{
    private static readonly Dictionary<string, string?> Settings = new()
    {
        ["ConnectionStrings:fleetdb"] = "Host=127.0.0.1;Database=fleet;Username=fleet;Password=x",
        ["ConnectionStrings:rabbitmq"] = "amqp://fleet:x@127.0.0.1/fleet",
    };

    [Fact]
    public void TheWorker_SendsNoUsageTelemetry()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(Settings);
        builder.AddFleetWorker();
        using var host = builder.Build();

        AssertNothingReported(host.Services);
    }

    [Fact]
    public void TheApi_SendsNoUsageTelemetry()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(Settings);
        builder.AddFleetApi();
        using var host = builder.Build();

        AssertNothingReported(host.Services);
    }

    /// <summary>The tracker the bus consults before it configures itself: disabled, it collects and sends nothing.</summary>
    private static void AssertNothingReported(IServiceProvider services)
    {
        Assert.False(services.GetRequiredService<IOptions<UsageTelemetryOptions>>().Value.Enabled);
        var tracker = Assert.IsType<UsageTracker>(services.GetRequiredService<IUsageTracker>());
        Assert.False(tracker.Enabled);
    }
}
