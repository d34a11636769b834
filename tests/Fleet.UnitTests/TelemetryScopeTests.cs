using System.Diagnostics.Metrics;
using Fleet.ServiceDefaults;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Fleet.UnitTests;

/// <summary>
/// Two hosts in one process (the integration tests run several APIs at once) each export their own meters: without
/// <c>AddFleetTelemetry</c>'s filter, a provider merged the other host's gauge of the same name into its own series and
/// showed the value of whichever callback ran last, and once the other host stopped (disposing its meters) the merged
/// series was retired: the API's /metrics lost every <c>fleet_</c> gauge while it ran on.
/// </summary>
public sealed class TelemetryScopeTests
{
    private const string MeterName = "Fleet.Test.Scope";

    [Fact]
    public void EachHost_ExportsTheGaugesOfItsOwnMeters_NotThoseOfAnotherHostsMeterOfTheSameName()
    {
        var first = Start(1, out var firstExported);
        using var second = Start(2, out var secondExported);

        second.Services.GetRequiredService<MeterProvider>().ForceFlush();
        first.Services.GetRequiredService<MeterProvider>().ForceFlush();
        Assert.Equal([2L], Values(secondExported));
        Assert.Equal([1L], Values(firstExported));

        // The first host stops and disposes its meters. Merged, its instrument's end would retire the shared series,
        // and the second host's gauge would be gone from its exports from the next collection on.
        first.Dispose();
        var provider = second.Services.GetRequiredService<MeterProvider>();
        for (var collection = 0; collection < 3; collection++)
        {
            secondExported.Clear();
            provider.ForceFlush();
            Assert.Equal([2L], Values(secondExported));
        }
    }

    private static IHost Start(long value, out List<Metric> exported)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.AddFleetTelemetry("scope-test", MeterName);
        var list = new List<Metric>();
        builder.Services.ConfigureOpenTelemetryMeterProvider(metrics => metrics.AddInMemoryExporter(list));
        var host = builder.Build();
        _ = host.Services.GetRequiredService<MeterProvider>();
        var meter = host.Services.GetRequiredService<IMeterFactory>().Create(MeterName);
        meter.CreateObservableGauge("fleet.scope.value", () => value);
        exported = list;
        return host;
    }

    private static List<long> Values(List<Metric> exported)
    {
        var values = new List<long>();
        foreach (var metric in exported.Where(m => m.Name == "fleet.scope.value"))
        {
            foreach (ref readonly var point in metric.GetMetricPoints())
            {
                values.Add(point.GetGaugeLastValueLong());
            }
        }

        return values;
    }
}
