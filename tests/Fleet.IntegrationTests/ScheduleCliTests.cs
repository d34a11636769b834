using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>fleet schedule</c>, the built command against the test database: what it stores is what the API shows and
/// fires, and each subcommand's exit code.
/// </summary>
public sealed class ScheduleCliTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task ScheduleCommands_AddListPauseResumeRemove_AndTheApiFiresWhatTheyStore()
    {
        var added = await FleetCliAsync("schedule", "add", "cli-heartbeat", "--cron", "*/1 * * * * *", "--time-zone", "Europe/Berlin", "--type", "noop", "-p", """{"note":"cli"}""");
        Assert.True(added.ExitCode == 0, added.Output);
        Assert.Contains("next_fire_at:", added.Output, StringComparison.Ordinal);
        Assert.Equal(("*/1 * * * * *", "Europe/Berlin", "noop", "cli", false),
            Assert.Single(await ListAsync("SELECT cron, time_zone, task->>'type', task->'payload'->>'note', paused FROM fleet.schedules WHERE name = 'cli-heartbeat'",
                r => (r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetBoolean(4)))));

        var again = await FleetCliAsync("schedule", "add", "cli-heartbeat", "--cron", "0 * * * *", "--type", "noop");
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("exists", again.Output, StringComparison.Ordinal);
        var badCron = await FleetCliAsync("schedule", "add", "cli-bad", "--cron", "61 * * * *", "--type", "noop");
        Assert.Equal(2, badCron.ExitCode);
        Assert.Contains("--cron", badCron.Output, StringComparison.Ordinal);
        var badZone = await FleetCliAsync("schedule", "add", "cli-bad", "--cron", "0 * * * *", "--time-zone", "Mars/Base", "--type", "noop");
        Assert.Equal(2, badZone.ExitCode);
        Assert.Contains("--time-zone", badZone.Output, StringComparison.Ordinal);

        // The API fires a schedule the CLI stored.
        await using (var api = await ApiHost.StartAsync(Fleet))
        {
            Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE schedule_name = 'cli-heartbeat'") >= 2,
                TimeSpan.FromSeconds(30)), "the API did not fire the CLI's schedule");
        }

        var list = await FleetCliAsync("schedule", "list");
        Assert.True(list.ExitCode == 0, list.Output);
        Assert.Contains("cli-heartbeat", list.Output, StringComparison.Ordinal);
        Assert.Contains("active", list.Output, StringComparison.Ordinal);
        var lastTask = await ScalarAsync<Guid>("SELECT last_task_id FROM fleet.schedules WHERE name = 'cli-heartbeat'");
        Assert.Contains(lastTask.ToString(), list.Output, StringComparison.Ordinal);

        var paused = await FleetCliAsync("schedule", "pause", "cli-heartbeat");
        Assert.True(paused.ExitCode == 0, paused.Output);
        Assert.True(await ScalarAsync<bool>("SELECT paused AND next_fire_at IS NULL FROM fleet.schedules WHERE name = 'cli-heartbeat'"));
        // Resumed from the first tick after the resume (no API runs now, so nothing moves it on).
        var beforeResume = DateTimeOffset.UtcNow;
        var resumed = await FleetCliAsync("schedule", "resume", "cli-heartbeat");
        Assert.True(resumed.ExitCode == 0, resumed.Output);
        Assert.True(await ScalarAsync<bool>("SELECT NOT paused AND next_fire_at > @before FROM fleet.schedules WHERE name = 'cli-heartbeat'", ("before", beforeResume)));

        var removed = await FleetCliAsync("schedule", "remove", "cli-heartbeat");
        Assert.True(removed.ExitCode == 0, removed.Output);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.schedules"));
        Assert.True(await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE schedule_name = 'cli-heartbeat'") >= 2, "removing a schedule kept its tasks");
        Assert.Equal(1, (await FleetCliAsync("schedule", "remove", "cli-heartbeat")).ExitCode);
        Assert.Equal(1, (await FleetCliAsync("schedule", "pause", "cli-heartbeat")).ExitCode);
        await WaitForFinalAsync(await ListAsync("SELECT id FROM fleet.tasks WHERE schedule_name = 'cli-heartbeat'", r => r.GetGuid(0)));
    }
}
