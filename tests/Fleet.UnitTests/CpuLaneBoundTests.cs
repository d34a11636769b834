using System.Text.Json;
using Fleet.ServiceDefaults;
using Fleet.Tasks;
using Fleet.Worker;
using Fleet.Worker.MessagePath;
using Fleet.Worker.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>
/// Threads abandoned to handlers that ignore their time limit are replaced only up to Worker:MaxAbandonedThreads;
/// past it the lane shrinks instead of growing, says so, and stops the worker.
/// </summary>
public sealed class CpuLaneBoundTests : IDisposable
{
    private readonly List<ManualResetEventSlim> _releases = [];
    private readonly StopRecorder _lifetime = new();

    public void Dispose()
    {
        foreach (var release in _releases)
        {
            release.Set();
        }

        // The lane sets the exit code of the process it stops, here the test host's.
        Environment.ExitCode = 0;
    }

    [Fact]
    public void StuckThreads_AreReplacedUpToTheBound_ThenNotAtAll()
    {
        using var lane = NewLane(threads: 1, maxAbandoned: 1);

        // Each stuck run is abandoned once it runs, as the executor does at the hard stop.
        var first = StartStuck(lane);
        first.Abandon();
        Assert.Equal((2, 1, false), (lane.StartedThreads, lane.AbandonedThreads, lane.Exhausted));

        var second = StartStuck(lane);
        second.Abandon();
        Assert.Equal((2, 2, 1, true), (lane.StartedThreads, lane.AbandonedThreads, lane.UnreplacedThreads, lane.Exhausted));

        // No thread is left to run more: before the bound, each of these would have had a thread of its own.
        var third = lane.Start(Stuck(out _), CancellationToken.None);
        Thread.Sleep(200);
        third.Abandon();
        Assert.Equal(2, lane.StartedThreads);
        Assert.True(third.Completion.Task.IsCanceled);
        Assert.True(SpinWait.SpinUntil(() => _lifetime.Stops == 1, TimeSpan.FromSeconds(10)), "the worker was not stopped");
        Assert.Equal(CpuLane.ExhaustedExitCode, Environment.ExitCode);
    }

    [Fact]
    public async Task AnUnreplacedThread_WithholdsItsPlace_UntilItsHandlerReturns_ThenServesTheLaneAgain()
    {
        using var lane = NewLane(threads: 2, maxAbandoned: 0);
        var stuckPlace = TakePlace(lane);
        await stuckPlace.Entered.WaitAsync(TimeSpan.FromSeconds(5));
        var stuck = StartStuck(lane);
        var otherPlace = TakePlace(lane);
        await otherPlace.Entered.WaitAsync(TimeSpan.FromSeconds(5));

        stuck.Abandon(); // not replaced: one thread is left
        await stuckPlace.LeaveAsync(); // the abandoned task's work ends and its place is freed; the lane keeps it
        await otherPlace.LeaveAsync();

        var admitted = TakePlace(lane);
        await admitted.Entered.WaitAsync(TimeSpan.FromSeconds(5));
        var waiting = TakePlace(lane);
        await Task.Delay(100);
        Assert.False(waiting.Entered.IsCompleted); // one thread, one place

        _releases[0].Set(); // the stuck handler returns at last
        await waiting.Entered.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal((0, 0), (lane.AbandonedThreads, lane.UnreplacedThreads));

        // Both threads run tasks again, at once.
        using var bothRunning = new CountdownEvent(2);
        using var finish = new ManualResetEventSlim();
        var runs = Enumerable.Range(0, 2).Select(_ => lane.Start(_ =>
        {
            bothRunning.Signal();
            finish.Wait();
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(1));
        }, CancellationToken.None)).ToList();
        Assert.True(bothRunning.Wait(TimeSpan.FromSeconds(5)), "the thread that came back does not run tasks");
        finish.Set();
        await Task.WhenAll(runs.Select(r => r.Completion.Task));
        await admitted.LeaveAsync();
        await waiting.LeaveAsync();
    }

    [Fact]
    public async Task TheHealthCheck_IsUnhealthyOnceTheLaneIsExhausted_WithTheCountAndTheReason()
    {
        using var lane = NewLane(threads: 1, maxAbandoned: 1);
        var check = new CpuLaneHealthCheck(lane);
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext())).Status);

        StartStuck(lane).Abandon();
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext())).Status);
        StartStuck(lane).Abandon();

        var result = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Contains("2 CPU-lane threads are stuck", result.Description, StringComparison.Ordinal);
        Assert.Contains("Worker:MaxAbandonedThreads (1)", result.Description, StringComparison.Ordinal);
        Assert.Contains("down to 0 of 1 threads", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void TheWorkerHost_ChecksTheCpuLaneForReadiness()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = "Host=127.0.0.1;Database=fleet;Username=fleet;Password=x",
            ["ConnectionStrings:rabbitmq"] = "amqp://fleet:x@127.0.0.1/fleet",
        });
        builder.AddFleetWorker();
        using var host = builder.Build();

        var registrations = host.Services.GetRequiredService<IOptions<HealthCheckServiceOptions>>().Value.Registrations;
        Assert.Contains(registrations, r => r.Name == "cpu-lane" && r.Tags.Contains(TelemetryExtensions.ReadyTag));
        Assert.Equal(Environment.ProcessorCount, host.Services.GetRequiredService<CpuLane>().MaxAbandonedThreads);
    }

    // No places beyond the threads here, so that a withheld place is a lost thread's and nothing else.
    private CpuLane NewLane(int threads, int maxAbandoned) =>
        new(Options.Create(new WorkerOptions { CpuConcurrency = threads, CpuClaimAhead = 0, MaxAbandonedThreads = maxAbandoned }), lifetime: _lifetime);

    /// <summary>Takes a place in the lane, as a CPU-queue message does, and holds it until <see cref="Held.LeaveAsync"/>.</summary>
    private static Held TakePlace(CpuLane lane)
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = lane.RunAsync(Timeout.InfiniteTimeSpan, async _ =>
        {
            entered.SetResult();
            await release.Task;
        }, CancellationToken.None);
        return new Held(entered.Task, release, run);
    }

    /// <summary>Starts a run whose handler ignores its token until the test releases it, and waits until it runs.</summary>
    private CpuLane.CpuRun StartStuck(CpuLane lane)
    {
        var run = lane.Start(Stuck(out var started), CancellationToken.None);
        Assert.True(started.Wait(TimeSpan.FromSeconds(5)), "the stuck run never started");
        return run;
    }

    private PreparedTask Stuck(out ManualResetEventSlim started)
    {
        var release = new ManualResetEventSlim();
        var running = new ManualResetEventSlim();
        _releases.Add(release);
        started = running;
        return _ =>
        {
            running.Set();
            release.Wait();
            return ValueTask.FromResult(JsonSerializer.SerializeToElement(0));
        };
    }

    private sealed class StopRecorder : IHostApplicationLifetime
    {
        private int _stops;

        public int Stops => Volatile.Read(ref _stops);

        public CancellationToken ApplicationStarted => CancellationToken.None;

        public CancellationToken ApplicationStopping => CancellationToken.None;

        public CancellationToken ApplicationStopped => CancellationToken.None;

        public void StopApplication() => Interlocked.Increment(ref _stops);
    }

    /// <summary>A place taken by <see cref="TakePlace"/>: whether it was entered, and the end of its work.</summary>
    private sealed record Held(Task Entered, TaskCompletionSource Release, Task<bool> Run)
    {
        public async Task LeaveAsync()
        {
            Release.SetResult();
            Assert.True(await Run.WaitAsync(TimeSpan.FromSeconds(5)));
        }
    }
}
