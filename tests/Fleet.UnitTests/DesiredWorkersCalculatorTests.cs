using Fleet.Api.Autoscaling;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>The autoscaling formula (docs/observability.md), on samples written out by hand.</summary>
public sealed class DesiredWorkersCalculatorTests
{
    private static readonly AutoscaleOptions Defaults = Options();

    [Fact]
    public void EmptyAndIdle_WantsTheMinimum()
    {
        var desired = Calculate([Cpu(ready: 0, unacked: 0, rate: 0.5), Io(ready: 0, unacked: 0, rate: null)], busy: 0);

        Assert.Equal(1, desired.Total);
        Assert.Equal(1, desired.ByLane["cpu"]);
        Assert.Equal(1, desired.ByLane["io"]);
        Assert.Equal(0, Calculate([Cpu(0, 0, null)], busy: 0, Options(min: 0)).Total);
    }

    [Fact]
    public void AGrowingBacklog_WantsMoreWorkers()
    {
        // 4 CPU slots per worker, each worker measured at 2 tasks/s: one worker gets through 60 tasks in 30 s.
        var sizes = new[] { 0, 30, 60, 61, 600, 1200 };

        var desired = sizes.Select(ready => Calculate([Cpu(ready, unacked: 0, rate: 2.0)], busy: 0).Total).ToList();

        Assert.Equal([1, 1, 1, 2, 10, 20], desired);
    }

    [Fact]
    public void OnlyUnackedWorkInFlight_KeepsTheWorkersThatHoldIt()
    {
        // Nothing ready, but 3 workers' worth of slots (4 each) hold running or prefetched tasks, and the tasks are
        // fast: the drain estimate alone would say 1, which would scale busy workers away.
        var inFlight = Calculate([Cpu(ready: 0, unacked: 12, rate: 50, busy: 3)], busy: 3);
        var fewerBusy = Calculate([Cpu(ready: 0, unacked: 12, rate: 50, busy: 0)], busy: 0);

        Assert.Equal(3, inFlight.Total);
        Assert.Equal(3, fewerBusy.Total);
    }

    [Fact]
    public void BusyWorkers_AreNeverScaledAway_EvenWhenTheQueueLooksEmpty()
    {
        // The broker's counters lag by up to 5 s; the database says 5 workers run tasks.
        var desired = Calculate([Cpu(ready: 0, unacked: 0, rate: 1, busy: 5), Io(ready: 0, unacked: 0, rate: null)], busy: 5);

        Assert.Equal(5, desired.Total);
        Assert.Equal(5, desired.ByLane["cpu"]);
        Assert.Equal(1, desired.ByLane["io"]);
    }

    [Fact]
    public void NoRateMeasuredYet_FallsBackToOneSlotPerOutstandingTask()
    {
        var desired = Calculate([Cpu(ready: 37, unacked: 3, rate: null)], busy: 0);

        // 40 outstanding tasks over 4 slots per worker.
        Assert.Equal(10, desired.Total);
    }

    [Fact]
    public void ASlowMeasuredRate_NeverAsksForMoreThanOneSlotPerTask()
    {
        // Tasks longer than the target drain time: more workers than slots for every task would only idle.
        var desired = Calculate([Cpu(ready: 40, unacked: 0, rate: 0.01)], busy: 0);

        Assert.Equal(10, desired.Total);
    }

    [Fact]
    public void AFastRate_DrainsWithFewerWorkersThanSlots()
    {
        // 256 I/O slots per worker at 100 tasks/s each: 3,000 tasks per worker within 30 s.
        var desired = Calculate([Io(ready: 9000, unacked: 512, rate: 100)], busy: 2);

        Assert.Equal(4, desired.Total);
    }

    [Fact]
    public void UnknownCapacity_WantsOneWorkerForALaneWithWork_ThenItsSizeIsKnown()
    {
        var desired = Calculate([new LaneLoad("io", Ready: 10_000, Unacked: 0, WorkerCapacity: 0, BusyWorkers: 0, CompletionsPerWorkerPerSecond: null)], busy: 0, Options(min: 0));

        Assert.Equal(1, desired.Total);
    }

    [Fact]
    public void TheFleetTotal_IsTheLargestLane_NotTheSum()
    {
        // A worker serves both lanes at once, from separate slots.
        var desired = Calculate([Cpu(ready: 40, unacked: 0, rate: null), Io(ready: 1280, unacked: 0, rate: null)], busy: 0);

        Assert.Equal(10, desired.ByLane["cpu"]);
        Assert.Equal(5, desired.ByLane["io"]);
        Assert.Equal(10, desired.Total);
    }

    [Fact]
    public void Results_AreClampedToMinAndMax()
    {
        var options = Options(min: 2, max: 8);

        Assert.Equal(2, Calculate([Cpu(0, 0, null)], busy: 0, options).Total);
        Assert.Equal(8, Calculate([Cpu(ready: 1_000_000, unacked: 0, rate: null)], busy: 0, options).Total);
        Assert.Equal(8, Calculate([Cpu(ready: 1_000_000, unacked: 0, rate: null)], busy: 0, options).ByLane["cpu"]);

        // Max is the operator's hard limit, even above the busy workers.
        Assert.Equal(8, Calculate([Cpu(ready: 0, unacked: 0, rate: null, busy: 12)], busy: 12, options).Total);
    }

    [Fact]
    public void NegativeOrHugeInputs_StayInRange()
    {
        Assert.Equal(1, Calculate([Cpu(ready: -5, unacked: -1, rate: -3)], busy: 0).Total);
        Assert.Equal(100, Calculate([Cpu(ready: long.MaxValue / 2, unacked: 0, rate: null)], busy: 0).Total);
    }

    [Theory]
    [InlineData("Api:Autoscale:TargetDrainSeconds", "0", "TargetDrainSeconds")]
    [InlineData("Api:Autoscale:SampleSeconds", "0", "SampleSeconds")]
    [InlineData("Api:Autoscale:RateWindowSeconds", "5", "RateWindowSeconds")]
    [InlineData("Api:Autoscale:MaxWorkers", "0", "MaxWorkers")]
    [InlineData("Api:Autoscale:MinWorkers", "101", "MinWorkers")]
    public void InvalidAutoscaleOptions_FailValidation_NamingTheSetting(string key, string value, string named)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [key] = value }).Build());
        services.AddOptions<AutoscaleOptions>().BindConfiguration(AutoscaleOptions.SectionName).ValidateDataAnnotations();
        using var provider = services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<AutoscaleOptions>>().Value);

        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }

    private static DesiredWorkers Calculate(IReadOnlyList<LaneLoad> lanes, int busy, AutoscaleOptions? options = null) =>
        new DesiredWorkersCalculator(options ?? Defaults).Calculate(lanes, busy);

    private static AutoscaleOptions Options(int min = 1, int max = 100) =>
        new() { TargetDrainSeconds = 30, MinWorkers = min, MaxWorkers = max };

    private static LaneLoad Cpu(long ready, long unacked, double? rate, int busy = 0) => new("cpu", ready, unacked, 4, busy, rate);

    private static LaneLoad Io(long ready, long unacked, double? rate, int busy = 0) => new("io", ready, unacked, 256, busy, rate);
}
