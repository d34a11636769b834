using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using Fleet.Api.Scheduling;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence.Scheduling;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Recurring schedules firing on the real servers: API hosts in this process (two at once, restarted), the database's
/// rows of the tasks they created, and the in-process worker running those tasks. Real time in short windows, or a
/// fake clock where the test needs months to pass.
/// </summary>
public sealed class ScheduleFiringTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    [Fact]
    public async Task EverySecondSchedule_WithTwoApiHostsRunning_CreatesOneTaskPerTick_WithoutDuplicates()
    {
        await using var first = await ApiHost.StartAsync(Fleet);
        await using var second = await ApiHost.StartAsync(Fleet);
        using var http = first.CreateClient();
        await CreateAsync(http, "every-second", "*/1 * * * * *");

        // A few seconds of ticks with both replicas looking for due schedules all the time.
        Assert.True(await EventuallyAsync(async () => (await TasksOfAsync("every-second")).Count >= 5, TimeSpan.FromSeconds(30)),
            "fewer than 5 firings in 30 s");
        await PauseAsync(http, "every-second");
        var tasks = await TasksOfAsync("every-second");

        AssertOneTaskPerFireTime("every-second", tasks);
        foreach (var task in tasks)
        {
            Assert.Equal(0, task.ScheduledFor.Millisecond);
        }

        // On an idle machine each tick follows the one before: no tick missed by the replicas' hand-over.
        var gaps = tasks.Zip(tasks.Skip(1), (a, b) => (b.ScheduledFor - a.ScheduledFor).TotalSeconds).ToList();
        var lateness = tasks.Select(t => (t.SubmittedAt - t.ScheduledFor).TotalMilliseconds).ToList();
        Report(string.Create(CultureInfo.InvariantCulture,
            $"two hosts: {tasks.Count} tasks; gaps between fire times (s): {string.Join(' ', gaps)}; submitted after the tick (ms): max {lateness.Max():0}, mean {lateness.Average():0}"));
        Assert.All(lateness, ms => Assert.InRange(ms, 0, 5000));
        Assert.True(gaps.Count(g => g > 1) <= 1, $"ticks missed: gaps {string.Join(' ', gaps)}");

        // Both hosts answer the same schedule: its last run is the last task.
        using var other = second.CreateClient();
        var view = await other.GetFromJsonAsync<ScheduleView>("schedules/every-second");
        Assert.Equal(tasks[^1].Id, view!.LastTaskId);
        Assert.Equal(tasks[^1].ScheduledFor, view.LastFiredAt);
        await WaitForFinalAsync([.. tasks.Select(t => t.Id)]);
    }

    [Fact]
    public async Task PausedSchedule_FiresNothing_AndResumedContinuesFromTheNextTick()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        using var http = api.CreateClient();
        await CreateAsync(http, "pausable", "*/1 * * * * *");
        Assert.True(await EventuallyAsync(async () => (await TasksOfAsync("pausable")).Count >= 2, TimeSpan.FromSeconds(30)), "it never fired twice");

        await PauseAsync(http, "pausable");
        var atPause = await TasksOfAsync("pausable");
        var pausedAt = DateTimeOffset.UtcNow;
        await Task.Delay(TimeSpan.FromSeconds(3));
        var whilePaused = await TasksOfAsync("pausable");
        Assert.Equal(atPause.Select(t => t.Id), whilePaused.Select(t => t.Id));

        var resumedAt = DateTimeOffset.UtcNow;
        using (var resumed = await http.PostAsync("schedules/pausable/resume", null))
        {
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        }

        Assert.True(await EventuallyAsync(async () => (await TasksOfAsync("pausable")).Count >= atPause.Count + 2, TimeSpan.FromSeconds(30)),
            "it did not fire again after resume");
        await PauseAsync(http, "pausable");
        var tasks = await TasksOfAsync("pausable");

        // The ticks of the pause created nothing, not even one catch-up task.
        AssertOneTaskPerFireTime("pausable", tasks);
        Assert.DoesNotContain(tasks, t => t.ScheduledFor > pausedAt && t.ScheduledFor <= resumedAt);
        Assert.True(tasks.Count(t => t.ScheduledFor > resumedAt) >= 2);
        await WaitForFinalAsync([.. tasks.Select(t => t.Id)]);
    }

    [Fact]
    public async Task Restart_FiresNoDuplicate_AndTheMissedWindowFiresOnce()
    {
        DateTimeOffset lastBeforeStop;
        await using (var before = await ApiHost.StartAsync(Fleet))
        {
            using var http = before.CreateClient();
            await CreateAsync(http, "restarted", "*/1 * * * * *");
            Assert.True(await EventuallyAsync(async () => (await TasksOfAsync("restarted")).Count >= 2, TimeSpan.FromSeconds(30)), "it never fired twice");
        }

        // Everything that fires schedules is down now: the ticks of the next few seconds are missed.
        lastBeforeStop = (await TasksOfAsync("restarted"))[^1].ScheduledFor;
        await Task.Delay(TimeSpan.FromSeconds(4));
        var downUntil = DateTimeOffset.UtcNow;
        Assert.True(downUntil - lastBeforeStop >= TimeSpan.FromSeconds(4));

        await using var after = await ApiHost.StartAsync(Fleet);
        using var client = after.CreateClient();
        Assert.True(await EventuallyAsync(async () => (await TasksOfAsync("restarted")).Count(t => t.ScheduledFor > lastBeforeStop) >= 3, TimeSpan.FromSeconds(30)),
            "it did not fire after the restart");
        await PauseAsync(client, "restarted");
        var tasks = await TasksOfAsync("restarted");
        AssertOneTaskPerFireTime("restarted", tasks);

        // The missed ticks (lastBeforeStop + 1 s up to downUntil) made one task, for the latest of them (or a later
        // tick, if the new host's first round came more than a second after downUntil): none for the earlier ones.
        var catchUp = tasks.First(t => t.ScheduledFor > lastBeforeStop);
        Report($"restart: last fire before the stop {lastBeforeStop:HH:mm:ss}, down until {downUntil:HH:mm:ss.fff}, catch-up fired for {catchUp.ScheduledFor:HH:mm:ss} at {catchUp.SubmittedAt:HH:mm:ss.fff}");
        Assert.True(catchUp.ScheduledFor >= downUntil.AddSeconds(-1), $"the first task after the restart is for {catchUp.ScheduledFor:HH:mm:ss}, an early missed tick");
        Assert.True(catchUp.ScheduledFor - lastBeforeStop >= TimeSpan.FromSeconds(3), "fewer than two ticks were skipped");
        await WaitForFinalAsync([.. tasks.Select(t => t.Id)]);
    }

    [Fact]
    public async Task ATaskWithDelaySeconds_WaitsThatLongAfterEachFireTime()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        using var http = api.CreateClient();
        using (var created = await http.PostAsJsonAsync("schedules", new { name = "delayed", cron = "*/1 * * * * *", task = new { type = "noop", delaySeconds = 2 } }))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        }

        // delaySeconds counts from each firing, not from when the schedule was created.
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE schedule_name = 'delayed' AND status = 'succeeded'") >= 2, TimeSpan.FromSeconds(30)), "no delayed firing ran");
        await PauseAsync(http, "delayed");
        var ran = await ListAsync(
            "SELECT scheduled_for, not_before, started_at FROM fleet.tasks WHERE schedule_name = 'delayed' AND status = 'succeeded' ORDER BY scheduled_for",
            r => (For: r.GetFieldValue<DateTimeOffset>(0), NotBefore: r.GetFieldValue<DateTimeOffset>(1), Started: r.GetFieldValue<DateTimeOffset>(2)));
        Report(string.Join("; ", ran.Select(t => string.Create(CultureInfo.InvariantCulture,
            $"delayed: fire {t.For:HH:mm:ss}, not before +{(t.NotBefore - t.For).TotalMilliseconds:0} ms, started +{(t.Started - t.For).TotalMilliseconds:0} ms"))));
        Assert.All(ran, t =>
        {
            Assert.InRange((t.NotBefore - t.For).TotalSeconds, 2, 7);
            Assert.True(t.Started >= t.NotBefore, $"started {t.Started:O} before its time {t.NotBefore:O}");
        });
        await WaitForFinalAsync(await ListAsync("SELECT id FROM fleet.tasks WHERE schedule_name = 'delayed'", r => r.GetGuid(0)));
    }

    [Fact]
    public async Task OnAFakeClock_AMonthDown_FiresOnce_AndARepeatedFiringInsertsNothing()
    {
        // The schedules' clock only: the host's other timers run on real time.
        var clock = new FakeTimeProvider(new DateTimeOffset(2031, 1, 15, 10, 0, 30, TimeSpan.Zero));
        await using var api = await ApiHost.StartAsync(Fleet, configureServices: s => s.AddKeyedSingleton<TimeProvider>(ScheduleFirer.ClockKey, clock));
        using var http = api.CreateClient();
        var created = await CreateAsync(http, "every-minute", "0 * * * * *");
        Assert.Equal(new DateTimeOffset(2031, 1, 15, 10, 1, 0, TimeSpan.Zero), created.NextFireAt);

        // The clock moves in steps while the test polls, so a step never falls between a round and its next wait.
        Assert.True(await EventuallyAsync(Advancing(clock, TimeSpan.FromSeconds(1), async () => (await TasksOfAsync("every-minute")).Count == 1)),
            "the 10:01 tick did not fire");
        Assert.Equal(new DateTimeOffset(2031, 1, 15, 10, 1, 0, TimeSpan.Zero), (await TasksOfAsync("every-minute"))[0].ScheduledFor);

        // Thirty days without a round: 43,200 missed ticks make one task, for the latest of them.
        clock.Advance(TimeSpan.FromDays(30));
        Assert.True(await EventuallyAsync(Advancing(clock, TimeSpan.FromSeconds(1), async () => (await TasksOfAsync("every-minute")).Count >= 2)),
            "the catch-up did not fire");
        var tasks = await TasksOfAsync("every-minute");
        Assert.Equal(2, tasks.Count);
        Assert.Equal(new DateTimeOffset(2031, 2, 14, 10, 1, 0, TimeSpan.Zero), tasks[1].ScheduledFor);
        var nextTick = new DateTime(2031, 2, 14, 10, 2, 0, DateTimeKind.Utc);
        Assert.True(await EventuallyAsync(async () => await NextFireAtAsync("every-minute") == nextTick));

        // A round that died after the task's insert and before the schedule's update: the next round fires the same
        // tick again, and finds its task there (same id; one task per schedule and fire time).
        await using (var undo = Fleet.DataSource.CreateCommand("UPDATE fleet.schedules SET next_fire_at = last_fired_at WHERE name = 'every-minute'"))
        {
            Assert.Equal(1, await undo.ExecuteNonQueryAsync());
        }

        Assert.True(await EventuallyAsync(Advancing(clock, TimeSpan.FromMilliseconds(200), async () => await NextFireAtAsync("every-minute") == nextTick)),
            "the repeated firing did not run");
        var afterReplay = await TasksOfAsync("every-minute");
        Assert.Equal(tasks.Select(t => t.Id), afterReplay.Select(t => t.Id));
        AssertOneTaskPerFireTime("every-minute", afterReplay);

        await PauseAsync(http, "every-minute");
        await WaitForFinalAsync([.. afterReplay.Select(t => t.Id)]);
    }

    /// <summary>A measured figure, in the test's output and on stderr (which <c>make test-integration</c> shows).</summary>
    private void Report(string line)
    {
        output.WriteLine(line);
        Console.Error.WriteLine($"[schedules] {line}");
    }

    /// <summary>The condition, moving the fake clock one step each time it does not hold yet.</summary>
    private static Func<Task<bool>> Advancing(FakeTimeProvider clock, TimeSpan step, Func<Task<bool>> condition) => async () =>
    {
        if (await condition())
        {
            return true;
        }

        clock.Advance(step);
        return false;
    };

    private async Task<DateTime?> NextFireAtAsync(string name) =>
        await ScalarAsync<object>("SELECT next_fire_at FROM fleet.schedules WHERE name = @name", ("name", name)) as DateTime?;

    private static void AssertOneTaskPerFireTime(string name, List<ScheduledTask> tasks)
    {
        Assert.Equal(tasks.Count, tasks.Select(t => t.ScheduledFor).Distinct().Count());
        Assert.All(tasks, t => Assert.Equal(ScheduleNames.TaskId(name, t.ScheduledFor), t.Id));
    }

    private static async Task<ScheduleView> CreateAsync(HttpClient http, string name, string cron)
    {
        using var response = await http.PostAsJsonAsync("schedules", new { name, cron, task = new { type = "noop", payload = new { } } });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<ScheduleView>())!;
    }

    private static async Task PauseAsync(HttpClient http, string name)
    {
        using var response = await http.PostAsync($"schedules/{name}/pause", null);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private Task<List<ScheduledTask>> TasksOfAsync(string name) => ListAsync(
        "SELECT id, scheduled_for, submitted_at FROM fleet.tasks WHERE schedule_name = @name ORDER BY scheduled_for",
        r => new ScheduledTask(r.GetGuid(0), r.GetFieldValue<DateTimeOffset>(1), r.GetFieldValue<DateTimeOffset>(2)),
        ("name", name));

    private sealed record ScheduledTask(Guid Id, DateTimeOffset ScheduledFor, DateTimeOffset SubmittedAt);
}
