using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Fleet.Tasks.BuiltIn;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// The process lane in real worker processes with real children (the worker's own program, started again): a time
/// limit kills a child that ignores it, a child that leaks or crashes takes only its own task, children are recycled,
/// and none outlives its worker, whether it drains or is killed with SIGKILL. Outcomes are read from PostgreSQL and
/// from /proc, never from how fast anything ran.
/// </summary>
public sealed class ProcessLaneTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private const string ChildDied = "ProcessLaneChildDied";
    private const string MemoryLimit = "ProcessLaneMemoryLimit";

    [Fact]
    public async Task SpinningPastTheTimeLimit_EachChildIsKilled_TheTasksEndTimedOut_AndTheWorkerGoesBackToIdle()
    {
        // 4 children on 2 cores: the limits are wall-clock, so 50 tasks take 13 rounds of about 3 s instead of 25.
        const int tasks = 50;
        const int lanes = 4;
        var settings = LaneSettings("spin-lane", lanes, "fault-spin");
        settings["Worker:ProcessKillGraceSeconds"] = "0.5";
        await using var worker = WorkerProcess.Start(settings);
        await WaitUntilRunningAsync("spin-lane");
        var childrenBefore = ProcessTools.ChildrenOf(worker.Pid).Count;

        var ids = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, tasks).Select(_ =>
            TaskRequest.Create("fault-spin", new { seconds = 3600 }) with { TimeoutSeconds = 2, Queue = TaskQueues.Cpu }));

        // Threads once the lane is warm (its first round ended) and at the end: a thread per killed child would show.
        var mostChildren = 0;
        var childPids = new HashSet<int>();
        int? threadsWarm = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        long final;
        do
        {
            var children = ProcessTools.ChildrenOf(worker.Pid);
            mostChildren = Math.Max(mostChildren, children.Count);
            childPids.UnionWith(children);
            final = await FinalCountAsync(ids);
            if (threadsWarm is null && final >= 2 * lanes)
            {
                threadsWarm = ProcessTools.ThreadCount(worker.Pid);
            }

            await Task.Delay(100);
        }
        while (final < tasks && DateTime.UtcNow < deadline);

        var lastFinal = DateTime.UtcNow;
        var childrenAfter = ProcessTools.ChildrenOf(worker.Pid).Count;
        var threadsAfter = ProcessTools.ThreadCount(worker.Pid);
        var cores = double.MaxValue;
        while (cores > 0.25 && DateTime.UtcNow < lastFinal + TimeSpan.FromSeconds(5))
        {
            cores = await TreeCoresAsync(worker.Pid, TimeSpan.FromSeconds(2));
        }

        // Seconds after the last kill: every killed child was waited for, none left as a zombie.
        var zombies = ProcessTools.ZombieChildrenOf(worker.Pid).Count;

        var states = await ListAsync(
            "SELECT status, attempts, coalesce(error_type, ''), coalesce(error_message, '') FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Status: r.GetString(0), Attempts: r.GetInt32(1), ErrorType: r.GetString(2), Error: r.GetString(3)), ("ids", ids.ToArray()));
        output.WriteLine($"{final} of {tasks} final; children before {childrenBefore}, most at once {mostChildren}, after {childrenAfter}, " +
            $"{childPids.Count} distinct seen, {zombies} unreaped; worker threads warm {threadsWarm}, after {threadsAfter}; worker and children idle at {cores:0.00} cores");
        output.WriteLine($"a timeout: {states.FirstOrDefault().Error}");

        Assert.Equal(tasks, states.Count(s => s is { Status: "timed_out", Attempts: 1, ErrorType: "Timeout" }
            && s.Error.Contains("was killed", StringComparison.Ordinal) && s.Error.Contains("child process", StringComparison.Ordinal)));
        Assert.False(worker.HasExited, "the worker died");
        Assert.InRange(childrenBefore, 0, lanes);
        Assert.InRange(mostChildren, 1, lanes);
        Assert.InRange(childrenAfter, 0, lanes);
        Assert.Equal(0, zombies);
        Assert.True(childPids.Count > lanes, $"only {childPids.Count} children were seen for {tasks} killed ones: none was replaced?");
        Assert.True(cores < 0.25, $"the worker and its children still use {cores:0.00} cores 5 s after the last task ended");
        Assert.NotNull(threadsWarm);
        // A thread kept per killed child would add 50. The runtime's thread pool adds a few of its own under load
        // (+5 in a fresh-machine run, past the +4 once allowed here), so the bound is a fifth of the tasks.
        Assert.True(threadsAfter <= threadsWarm + tasks / 5, $"the worker grew from {threadsWarm} to {threadsAfter} threads");
    }

    [Fact]
    public async Task ALeakAndAFailFast_AmongHealthyTasks_TakeOnlyTheirOwnTasks_AndTheWorkerLivesOn()
    {
        var settings = LaneSettings("crash-lane", 2, "fault-leak", "fault-failfast", "sha256");
        settings["Worker:ProcessMaxRssMb"] = "200";
        await using var worker = WorkerProcess.Start(settings);
        await WaitUntilRunningAsync("crash-lane");

        var healthy = Enumerable.Range(0, 500)
            .Select(i => TaskRequest.Create("sha256", new { size_kb = 1, rounds = 1, seed = i }) with { TaskId = Guid.CreateVersion7() })
            .ToList();
        var leak = TaskRequest.Create("fault-leak", new { megabytes = 600, seconds = 30 }) with
        {
            TaskId = Guid.CreateVersion7(), Queue = TaskQueues.Cpu, TimeoutSeconds = 20,
        };
        var failFast = TaskRequest.Create("fault-failfast", new { message = "fault-failfast: injected in a process-lane test" }) with
        {
            TaskId = Guid.CreateVersion7(), Queue = TaskQueues.Cpu,
        };
        await Fleet.Client.SubmitManyAsync([.. healthy[..100], leak, .. healthy[100..200], failFast, .. healthy[200..]]);
        var healthyIds = healthy.Select(r => r.TaskId!.Value).ToList();
        await WaitForFinalAsync([.. healthyIds, leak.TaskId!.Value, failFast.TaskId!.Value], TimeSpan.FromMinutes(2));

        var leaked = (await GetTaskAsync(leak.TaskId!.Value))!;
        var crashed = (await GetTaskAsync(failFast.TaskId!.Value))!;
        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, healthyIds, [leak.TaskId!.Value, failFast.TaskId!.Value]);
        var crashAttempts = await ListAsync(
            "SELECT outcome || ' ' || coalesce(error_type, '') FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt",
            r => r.GetString(0), ("id", failFast.TaskId!.Value));
        output.WriteLine($"healthy: {report}");
        output.WriteLine($"leak: {leaked.Status} after {leaked.Attempts} attempt(s), {leaked.ErrorType}: {leaked.ErrorMessage}");
        output.WriteLine($"fail-fast: {crashed.Status} after {crashed.Attempts} attempt(s) [{string.Join(", ", crashAttempts)}], {crashed.ErrorType}: {crashed.ErrorMessage}");

        Assert.Equal((0L, 0L, 0L, 0L), (report.Lost, report.DuplicateExecutions, report.Unexpected, report.OpenAttempts));
        Assert.Equal(500L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1 AND result ? 'digest'",
            ("ids", healthyIds.ToArray())));

        Assert.Equal(("failed", MemoryLimit, 1), (leaked.Status, leaked.ErrorType, leaked.Attempts));
        Assert.Contains("Worker:ProcessMaxRssMb", leaked.ErrorMessage, StringComparison.Ordinal);

        Assert.Equal("failed", crashed.Status);
        Assert.Contains(crashed.ErrorType, new[] { ChildDied, "CrashLoop" });
        Assert.Matches("SIGABRT|exit code 134", crashed.ErrorMessage);
        Assert.All(crashAttempts, a => Assert.Contains(a, new[] { $"failed {ChildDied}", "failed CrashLoop" }));

        // The same process did all of it: alive, one row in fleet.workers, every attempt under its id.
        Assert.False(worker.HasExited, $"the worker died:\n{worker.Output}");
        Assert.True(ProcessTools.IsAlive(worker.Pid));
        var prefix = worker.WorkerIdPrefix("crash-lane");
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE host = 'crash-lane'"));
        Assert.Equal(0L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE worker_id NOT LIKE @p", ("p", prefix + "%")));
    }

    [Fact]
    public async Task Kill9OfTheWorker_WhileAChildRunsATask_LeavesNoChildBehind()
    {
        var settings = LaneSettings("killed-parent", 1, "fault-spin");
        await using var worker = WorkerProcess.Start(settings);
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-spin", new { seconds = 600 }) with { TimeoutSeconds = 900, Queue = TaskQueues.Cpu });

        List<int> children = [];
        Assert.True(await EventuallyAsync(async () =>
        {
            children = ProcessTools.ChildrenOf(worker.Pid);
            return children.Count == 1 && (await GetTaskAsync(id))!.Status == "running";
        }), "the task never ran in a child");
        var marker = $"FLEET_PROCESS_LANE_PARENT={worker.Pid}";
        Assert.Equal(children, ProcessTools.WithEnvironment(marker));
        var started = children.ToDictionary(pid => pid, ProcessTools.StartTime);

        // SIGKILL to the worker alone: its children are not signalled, they must notice by themselves.
        await KillAsync(worker.Pid);
        Assert.True(await EventuallyAsync(() => Task.FromResult(worker.HasExited), TimeSpan.FromSeconds(10)));

        bool ChildrenGone() => started.All(c => ProcessTools.StartTime(c.Key) != c.Value || !ProcessTools.IsAlive(c.Key));
        var gone = await EventuallyAsync(() => Task.FromResult(ChildrenGone() && ProcessTools.WithEnvironment(marker).Count == 0), TimeSpan.FromSeconds(5));
        output.WriteLine($"worker {worker.Pid} killed; its child {string.Join(", ", started.Keys)} gone within 5 s: {gone}");
        Assert.True(gone, $"children of the killed worker still run: {string.Join(", ", ProcessTools.WithEnvironment(marker))}");
    }

    [Fact]
    public async Task ProcessMaxTasks_RecyclesAChild_AfterThatManyTasks()
    {
        var settings = LaneSettings("recycling", 1, "fault-pid");
        settings["Worker:ProcessMaxTasks"] = "3";
        await using var worker = WorkerProcess.Start(settings);

        // One by one, so that the order of the tasks is the order of the children.
        var pids = new List<int>();
        for (var i = 0; i < 7; i++)
        {
            pids.Add(await RunPidTaskAsync());
        }

        output.WriteLine($"worker {worker.Pid}; the 7 tasks ran in {string.Join(", ", pids)}");
        Assert.DoesNotContain(worker.Pid, pids);
        Assert.Equal(pids.Distinct().Select(pid => Enumerable.Repeat(pid, 3)).SelectMany(p => p).Take(7), pids);
        Assert.Equal(3, pids.Distinct().Count());

        // The retired ones are gone; only the last, with one task run, may still wait for work.
        Assert.True(await EventuallyAsync(() => Task.FromResult(pids.Take(6).All(pid => ProcessTools.ParentOf(pid) != worker.Pid || !ProcessTools.IsAlive(pid))),
            TimeSpan.FromSeconds(10)), "a retired child is still alive");
        Assert.Equal([pids[6]], ProcessTools.ChildrenOf(worker.Pid));
    }

    [Fact]
    public async Task Sigterm_FinishesWhatEndsWithinTheDrain_HandsBackTheRest_AndLeavesNoChild()
    {
        var settings = LaneSettings("lane-drain", 2, "sleep", "fault-spin");
        settings["Worker:DrainSeconds"] = "6";
        await using var worker = WorkerProcess.Start(settings);
        var sleeper = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 3000 }));
        var spinner = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-spin", new { seconds = 600 }) with { TimeoutSeconds = 900, Queue = TaskQueues.Cpu });

        List<int> children = [];
        Assert.True(await EventuallyAsync(async () =>
        {
            children = ProcessTools.ChildrenOf(worker.Pid);
            return children.Count == 2 && await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'running'", ("ids", new[] { sleeper, spinner })) == 2;
        }), "the two tasks never ran in two children");
        var marker = $"FLEET_PROCESS_LANE_PARENT={worker.Pid}";

        var exitCode = await worker.TerminateAsync(TimeSpan.FromSeconds(40));

        var remaining = ProcessTools.WithEnvironment(marker);
        var slept = (await GetTaskAsync(sleeper))!;
        var spun = (await GetTaskAsync(spinner))!;
        var spinAttempts = await ListAsync("SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", spinner));
        output.WriteLine($"exit code {exitCode}; children {string.Join(", ", children)}, still alive after: {remaining.Count}; " +
            $"sleep {slept.Status}/{slept.Attempts}, spin {spun.Status} [{string.Join(", ", spinAttempts)}]");
        Assert.Equal(0, exitCode);
        Assert.Empty(remaining);
        Assert.All(children, pid => Assert.False(ProcessTools.IsAlive(pid) && ProcessTools.ParentOf(pid) == worker.Pid));
        Assert.Equal(("succeeded", 1), (slept.Status, slept.Attempts));
        Assert.Equal("queued", spun.Status);
        Assert.Equal(["handed_back"], spinAttempts);
        Assert.Equal("stopped", await ScalarAsync<string>("SELECT state FROM fleet.workers WHERE host = 'lane-drain'"));
    }

    [Fact]
    public async Task ABuiltInType_InTheProcessLane_ReturnsWhatTheThreadLaneReturns()
    {
        var payloads = Enumerable.Range(0, 6).Select(i => new { size_kb = 64 + i, rounds = 3, seed = i * 7 }).ToList();
        var invalid = TaskRequest.Create("sha256", new { size_kb = 0, rounds = 1, seed = 0 });

        // A handler's own exception too: the same error type and message, retried the same way.
        var throws = TaskRequest.Create("fault-timeout", new { }) with { MaxAttempts = 2 };

        Dictionary<int, string> processLane;
        List<int> children;
        TaskInfo refused;
        TaskInfo thrownInChild;
        await using (var worker = WorkerProcess.Start(LaneSettings("lane-sha", 1, "sha256", "fault-timeout")))
        {
            var ids = await Fleet.Client.SubmitManyAsync(payloads.Select(p => TaskRequest.Create("sha256", p)));
            var invalidId = await Fleet.Client.SubmitAsync(invalid);
            var throwsId = await Fleet.Client.SubmitAsync(throws);
            await WaitForFinalAsync([.. ids, invalidId, throwsId]);
            processLane = await DigestsAsync(ids);
            refused = (await GetTaskAsync(invalidId))!;
            thrownInChild = (await GetTaskAsync(throwsId))!;
            children = ProcessTools.ChildrenOf(worker.Pid);
        }

        Dictionary<int, string> threadLane;
        TaskInfo thrownInThread;
        await using (var worker = WorkerProcess.Start(LaneSettings("thread-sha", 1)))
        {
            var ids = await Fleet.Client.SubmitManyAsync(payloads.Select(p => TaskRequest.Create("sha256", p)));
            var throwsId = await Fleet.Client.SubmitAsync(throws);
            await WaitForFinalAsync([.. ids, throwsId]);
            threadLane = await DigestsAsync(ids);
            thrownInThread = (await GetTaskAsync(throwsId))!;
        }

        var direct = payloads.Select((p, i) => (i, new Sha256Handler().Prepare(JsonSerializer.SerializeToElement(p))(CancellationToken.None).AsTask().Result))
            .ToDictionary(x => x.i, x => x.Result.GetProperty("digest").GetString()!);
        output.WriteLine($"process lane (children {string.Join(", ", children)}): {string.Join(", ", processLane.Values.Select(d => d[..12]))}");
        output.WriteLine($"refused in the worker: {refused.ErrorType}: {refused.ErrorMessage}");
        Assert.Single(children); // the lane ran them: its idle child waits for the next task
        Assert.Equal(payloads.Count, processLane.Count);
        Assert.Equal(threadLane, processLane);
        Assert.Equal(direct, processLane);
        Assert.Equal(("failed", "ValidationError", 1), (refused.Status, refused.ErrorType, refused.Attempts));
        Assert.Equal(("failed", "System.TimeoutException", 2), (thrownInChild.Status, thrownInChild.ErrorType, thrownInChild.Attempts));
        Assert.Equal((thrownInThread.Status, thrownInThread.ErrorType, thrownInThread.ErrorMessage, thrownInThread.Attempts),
            (thrownInChild.Status, thrownInChild.ErrorType, thrownInChild.ErrorMessage, thrownInChild.Attempts));
    }

    [Fact]
    public async Task AHandlerThatStopsAtItsToken_EndsTimedOut_AndItsChildLivesOn()
    {
        var settings = LaneSettings("lane-cancel", 1, "sleep", "fault-pid");
        settings["Worker:ProcessKillGraceSeconds"] = "30";
        await using var worker = WorkerProcess.Start(settings);

        var before = await RunPidTaskAsync();
        var sleeper = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 600_000 }) with { TimeoutSeconds = 1 });
        await WaitForFinalAsync([sleeper], TimeSpan.FromSeconds(20));
        var after = await RunPidTaskAsync();

        var slept = (await GetTaskAsync(sleeper))!;
        output.WriteLine($"child {before} before, {after} after; sleep {slept.Status}: {slept.ErrorMessage}");
        Assert.Equal(("timed_out", "Timeout", 1), (slept.Status, slept.ErrorType, slept.Attempts));
        Assert.DoesNotContain("killed", slept.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(before, after);
        Assert.Equal([before], ProcessTools.ChildrenOf(worker.Pid));
    }

    [Fact]
    public async Task ChildrenKilledFromOutside_CostOnlyTheTaskTheyRan()
    {
        // What the kernel's OOM killer does: SIGKILL to a child, idle or busy, that the worker did not ask for.
        await using var worker = WorkerProcess.Start(LaneSettings("lane-oom", 1, "fault-pid", "fault-spin"));
        var idle = await RunPidTaskAsync();
        await KillAsync(idle);
        var next = await RunPidTaskAsync();

        var spinner = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-spin", new { seconds = 600 }) with { TimeoutSeconds = 900, MaxAttempts = 1, Queue = TaskQueues.Cpu });
        var idleCpu = ProcessTools.CpuTime(next);
        Assert.True(await EventuallyAsync(() => Task.FromResult(ProcessTools.CpuTime(next) > idleCpu + TimeSpan.FromSeconds(0.3))),
            "the spin task never ran in the idle child");
        await KillAsync(next);
        await WaitForFinalAsync([spinner]);
        var last = await RunPidTaskAsync();

        var spun = (await GetTaskAsync(spinner))!;
        output.WriteLine($"children {idle} (killed idle), {next} (killed busy), {last}; spin: {spun.Status} {spun.ErrorType}: {spun.ErrorMessage}");
        Assert.Equal(3, new[] { idle, next, last }.Distinct().Count());
        Assert.Equal(("failed", ChildDied, 1), (spun.Status, spun.ErrorType, spun.Attempts));
        Assert.Contains("signal 9", spun.ErrorMessage, StringComparison.Ordinal);
        Assert.False(worker.HasExited);
        Assert.Equal(3L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE type = 'fault-pid' AND status = 'succeeded' AND attempts = 1"));
    }

    private static Task KillAsync(int pid) =>
        ProcessTools.RunCheckedAsync("kill", ["-KILL", pid.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));

    /// <summary>Runs a <c>fault-pid</c> task to its end and returns the pid of the process that ran it.</summary>
    private async Task<int> RunPidTaskAsync()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("fault-pid", new { }) with { Queue = TaskQueues.Cpu });
        await WaitForFinalAsync([id]);
        var info = (await GetTaskAsync(id))!;
        Assert.Equal(("succeeded", 1), (info.Status, info.Attempts));
        return JsonDocument.Parse(info.Result!).RootElement.GetProperty("pid").GetInt32();
    }

    /// <summary>A worker's settings with <paramref name="processTypes"/> in its process lane.</summary>
    private Dictionary<string, string?> LaneSettings(string host, int cpuConcurrency, params string[] processTypes)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency);
        for (var i = 0; i < processTypes.Length; i++)
        {
            settings[$"Worker:ProcessTypes:{i}"] = processTypes[i];
        }

        return settings;
    }

    private async Task WaitUntilRunningAsync(string host) =>
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host = @h", ("h", host)) == 1), $"worker {host} never registered");

    private Task<long> FinalCountAsync(IReadOnlyCollection<Guid> ids) => ScalarAsync<long>(
        "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('succeeded','failed','timed_out','cancelled')", ("ids", ids.ToArray()));

    /// <summary>The <c>digest</c> of each task's result, by its position in <paramref name="ids"/>; every task must have succeeded.</summary>
    private async Task<Dictionary<int, string>> DigestsAsync(IReadOnlyList<Guid> ids)
    {
        var digests = new Dictionary<int, string>();
        for (var i = 0; i < ids.Count; i++)
        {
            var info = (await GetTaskAsync(ids[i]))!;
            Assert.Equal("succeeded", info.Status);
            digests[i] = JsonDocument.Parse(info.Result!).RootElement.GetProperty("digest").GetString()!;
        }

        return digests;
    }

    /// <summary>The cores a worker and its live children used together over <paramref name="window"/>, from /proc.</summary>
    private static async Task<double> TreeCoresAsync(int pid, TimeSpan window)
    {
        static TimeSpan Used(int pid) => (ProcessTools.CpuTime(pid) ?? TimeSpan.Zero)
            + ProcessTools.ChildrenOf(pid).Aggregate(TimeSpan.Zero, (sum, child) => sum + (ProcessTools.CpuTime(child) ?? TimeSpan.Zero));

        var before = Used(pid);
        await Task.Delay(window);
        return Math.Max(0, (Used(pid) - before) / window);
    }
}
