using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// A task type that spins past its time limit, ignoring cancellation, in a real worker process: the CPU lane
/// replaces stuck threads only up to Worker:MaxAbandonedThreads, then stops the worker for its supervisor.
/// </summary>
public sealed class AbandonedThreadsTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task SpinningTasksPastTheBound_DoNotEachBurnANewThread_TheWorkerStopsItselfInstead()
    {
        var settings = Fleet.WorkerSettings("spinner", cpuConcurrency: 1);
        settings["Worker:MaxAbandonedThreads"] = "1";
        settings["Worker:DrainSeconds"] = "5";
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await Fleet.Client.SubmitAsync(
                TaskRequest.Create("fault-spin", new { seconds = 120 }) with { TimeoutSeconds = 1, Queue = TaskQueues.Cpu }));
        }

        await using var worker = WorkerProcess.Start(settings);
        var mostLaneThreads = 0;
        var stopped = await EventuallyAsync(() =>
        {
            mostLaneThreads = Math.Max(mostLaneThreads, LaneThreads(worker.Pid));
            return Task.FromResult(worker.HasExited);
        }, TimeSpan.FromSeconds(60));

        var states = await ListAsync(
            "SELECT status, attempts, coalesce(error_message, '') FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Status: r.GetString(0), Attempts: r.GetInt32(1), Error: r.GetString(2)), ("ids", ids.ToArray()));
        output.WriteLine($"stopped by itself: {stopped}; most fleet-cpu threads alive at once: {mostLaneThreads}; tasks: {string.Join(", ", states)}");
        Assert.True(stopped, "the worker kept running with its CPU lane stuck");
        Assert.Equal(75, worker.ExitCode);
        Assert.Contains("CPU lane exhausted", worker.Output, StringComparison.Ordinal);
        Assert.InRange(mostLaneThreads, 1, 2); // one lane thread plus one replacement, never one more per spinning task

        // Two spun past their limit and were abandoned; the third, claimed ahead, never started (no thread was left to
        // run it) and went back to the queue with the drain, uncharged, for a healthy worker.
        Assert.Equal(2, states.Count(s => s is { Status: "timed_out", Attempts: 1 } && s.Error.Contains("abandoned", StringComparison.Ordinal)));
        Assert.Equal(1, states.Count(s => s is { Status: "queued" }));
        var third = await ListAsync(
            "SELECT a.outcome FROM fleet.task_attempts a JOIN fleet.tasks t ON t.id = a.task_id WHERE t.id = ANY(@ids) AND t.status = 'queued'",
            r => r.GetString(0), ("ids", ids.ToArray()));
        Assert.Equal(["handed_back"], third);
        Assert.Equal(1u, await QueueMessageCountAsync(TaskQueues.Cpu));
    }

    /// <summary>Threads of the process named like CPU-lane threads (fleet-cpu-N), alive now.</summary>
    private static int LaneThreads(int pid)
    {
        try
        {
            return Directory.EnumerateDirectories($"/proc/{pid}/task")
                .Count(task => File.ReadAllText(Path.Combine(task, "comm")).StartsWith("fleet-cpu-", StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return 0; // the process or one of its threads ended meanwhile
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }
}
