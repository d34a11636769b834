using System.Diagnostics.Metrics;
using Fleet.Tasks;
using Fleet.Worker;
using Fleet.Worker.ProcessLane;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>
/// The process lane's instruments and heartbeat figures, read from a pool no task ran in: what a fresh worker
/// reports. That children started, killed and died are counted is shown by a real worker in ProcessLaneVisibilityTests.
/// </summary>
public sealed class ProcessLaneMetricsTests
{
    [Fact]
    public async Task AWorkerWithAProcessLane_ReportsItsSlots_AndEveryCounterAtZero_KillsByReason()
    {
        var options = Options.Create(new WorkerOptions { CpuConcurrency = 1, ProcessTypes = ["sha256", "heat"], ProcessConcurrency = 3 });
        await using var pool = new ProcessPool(options, new TaskHandlerRegistry([]), NullLogger<ProcessPool>.Instance);
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();

        using var metrics = new ProcessLaneMetrics(factory, pool);
        var measured = Collect(factory);

        Assert.Equal((3, 0, 0L, 0L, 0L), (metrics.Slots, metrics.Busy, metrics.ChildrenStarted, metrics.Kills, metrics.Deaths));
        Assert.Equal(["heat", "sha256"], metrics.Types);
        Assert.Equal(3, measured[("fleet.process_lane.slots", "")]);
        Assert.Equal(0, measured[("fleet.process_lane.busy", "")]);
        Assert.Equal(0, measured[("fleet.process_lane.children", "")]);
        Assert.Equal(0, measured[("fleet.process_lane.children_started", "")]);
        Assert.Equal(0, measured[("fleet.process_lane.kills", "reason=time_limit")]);
        Assert.Equal(0, measured[("fleet.process_lane.kills", "reason=memory")]);
        Assert.Equal(0, measured[("fleet.process_lane.deaths", "")]);
        Assert.Equal(0, measured[("fleet.process_lane.recycled", "")]);
    }

    [Fact]
    public async Task AWorkerWithoutAProcessLane_ReportsNoSlots_WhateverItsCpuLane()
    {
        // No type runs in the lane, so no child can start: CpuConcurrency, which sizes a lane that exists, is not capacity.
        var options = Options.Create(new WorkerOptions { CpuConcurrency = 4 });
        await using var pool = new ProcessPool(options, new TaskHandlerRegistry([]), NullLogger<ProcessPool>.Instance);
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();

        using var metrics = new ProcessLaneMetrics(factory, pool);
        var measured = Collect(factory);

        Assert.Equal(0, pool.Slots);
        Assert.Equal(0, metrics.Slots);
        Assert.Empty(metrics.Types);
        Assert.Equal(0, measured[("fleet.process_lane.slots", "")]);
    }

    /// <summary>
    /// One collection of every <c>fleet.process_lane.*</c> instrument on <paramref name="factory"/>'s meter
    /// <c>Fleet.Worker</c> (the one the worker's Prometheus exporter reads), keyed by name and <c>tag=value</c> (""
    /// without tags). Only this factory's: other tests create meters of the same name.
    /// </summary>
    private static Dictionary<(string Name, string Tags), long> Collect(IMeterFactory factory)
    {
        var measured = new Dictionary<(string, string), long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory) && instrument.Meter.Name == WorkerMetrics.Name
                    && instrument.Name.StartsWith("fleet.process_lane.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => measured[(instrument.Name, Tags(tags))] = value);
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => measured[(instrument.Name, Tags(tags))] = value);
        listener.Start();
        listener.RecordObservableInstruments();
        return measured;
    }

    private static string Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var parts = new List<string>();
        foreach (var tag in tags)
        {
            parts.Add($"{tag.Key}={tag.Value}");
        }

        return string.Join(',', parts);
    }
}
