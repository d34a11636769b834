using Fleet.Persistence.Scheduling;
using Microsoft.Extensions.Time.Testing;

namespace Fleet.UnitTests;

/// <summary>Cron parsing, next fire times, the catch-up policy and DST of recurring schedules, on a fake clock.</summary>
public sealed class CronScheduleTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 4, 16, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("*/2 * * * * *", "2026-12-04T16:00:02Z")]
    [InlineData("30 * * * * *", "2026-12-04T16:00:30Z")]
    [InlineData("*/5 * * * *", "2026-12-04T16:05:00Z")]
    [InlineData("0 9 * * MON-FRI", "2026-12-07T09:00:00Z")]
    [InlineData("  0  9  *  *  *  ", "2026-12-05T09:00:00Z")]
    [InlineData("@hourly", "2026-12-04T17:00:00Z")]
    public void FiveOrSixFields_ChoseTheFormatByCount_AndFireStrictlyAfterNow(string cron, string next)
    {
        var (schedule, cronError, zoneError) = CronSchedule.Parse(cron, null);

        Assert.Null(cronError);
        Assert.Null(zoneError);
        Assert.Equal(TimeZoneInfo.Utc.Id, schedule!.Zone.Id);
        Assert.Equal(DateTimeOffset.Parse(next, System.Globalization.CultureInfo.InvariantCulture), schedule.NextAfter(Start));
    }

    [Theory]
    [InlineData("* * *")]
    [InlineData("* * * * * * *")]
    [InlineData("61 * * * *")]
    [InlineData("*/0 * * * * *")]
    [InlineData("0 0 31 2 * *")]
    [InlineData("")]
    [InlineData(null)]
    public void BadExpressions_AreRefused_WithAReason(string? cron)
    {
        var (schedule, cronError, zoneError) = CronSchedule.Parse(cron, "UTC");

        // An expression that parses but never occurs (February 31st) is not refused: it has no next time.
        if (schedule is not null)
        {
            Assert.Null(schedule.NextAfter(Start));
            return;
        }

        Assert.False(string.IsNullOrWhiteSpace(cronError));
        Assert.Null(zoneError);
    }

    [Theory]
    [InlineData("Mars/Olympus_Mons")]
    [InlineData("Europe/Berlinn")]
    [InlineData("../../etc/passwd")]
    public void UnknownTimeZones_AreRefused(string zone)
    {
        var (schedule, cronError, zoneError) = CronSchedule.Parse("0 * * * *", zone);

        Assert.Null(schedule);
        Assert.Null(cronError);
        Assert.Contains(zone, zoneError, StringComparison.Ordinal);
    }

    [Fact]
    public void ARoundEverySecond_FiresEachTickOnce_AndADayDownFiresOnce()
    {
        var clock = new FakeTimeProvider(Start.AddMilliseconds(300));
        var schedule = CronSchedule.Parse("*/2 * * * * *", "UTC").Schedule!;
        var loop = new SimulatedLoop(schedule, clock.GetUtcNow());

        for (var i = 0; i < 10; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            loop.Round(clock.GetUtcNow());
        }

        Assert.Equal(Enumerable.Range(1, 5).Select(i => Start.AddSeconds(2 * i)), loop.Fired);

        // Down for a day: 43,200 missed ticks, one firing, for the latest; then on as before.
        clock.Advance(TimeSpan.FromDays(1));
        loop.Round(clock.GetUtcNow());
        Assert.Equal(6, loop.Fired.Count);
        Assert.Equal(Start.AddDays(1).AddSeconds(10), loop.Fired[^1]);
        Assert.Equal(Start.AddDays(1).AddSeconds(12), loop.Next);
        clock.Advance(TimeSpan.FromSeconds(2));
        loop.Round(clock.GetUtcNow());
        Assert.Equal(Start.AddDays(1).AddSeconds(12), loop.Fired[^1]);
    }

    [Fact]
    public void LatestDue_OfASparseSchedule_IsItsLastOccurrenceBeforeNow_AndOfAFutureOneIsItself()
    {
        var weekly = CronSchedule.Parse("0 9 * * MON", "Europe/Berlin").Schedule!;
        var due = weekly.NextAfter(Start)!.Value;
        var now = due.AddDays(23);

        // Four Mondays passed; the last one is taken.
        Assert.Equal(TimeSpan.Zero, due.Offset);
        Assert.Equal(due.AddDays(21), weekly.LatestDue(due, now));
        Assert.Equal(TimeSpan.Zero, weekly.LatestDue(due, now).Offset);
        Assert.Equal(due, weekly.LatestDue(due, due));
        Assert.Equal(due, weekly.LatestDue(due, due.AddDays(-1)));
    }

    [Fact]
    public void LatestDue_AfterAMonthOfAnEverySecondSchedule_IsFoundWithoutStepping()
    {
        var everySecond = CronSchedule.Parse("* * * * * *", "UTC").Schedule!;
        var now = Start.AddDays(31).AddMilliseconds(700);

        Assert.Equal(Start.AddDays(31), everySecond.LatestDue(Start, now));
    }

    [Fact]
    public void DailyAt0230_InBerlin_OnTheSpringForwardDay_RunsAtTheTransition_AndOnTheFallBackDay_Once()
    {
        var daily = CronSchedule.Parse("30 2 * * *", "Europe/Berlin").Schedule!;

        // 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist, the run is at 03:00 CEST (01:00 UTC).
        var spring = daily.NextAfter(new DateTimeOffset(2026, 3, 28, 12, 0, 0, TimeSpan.Zero))!.Value;
        Assert.Equal(new DateTimeOffset(2026, 3, 28, 1, 30, 0, TimeSpan.Zero), daily.NextAfter(new DateTimeOffset(2026, 3, 27, 12, 0, 0, TimeSpan.Zero)));
        Assert.Equal(new DateTimeOffset(2026, 3, 29, 1, 0, 0, TimeSpan.Zero), spring);
        Assert.Equal(new DateTimeOffset(2026, 3, 30, 0, 30, 0, TimeSpan.Zero), daily.NextAfter(spring));

        // 25 October 2026: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, the run is once, at the first.
        var fall = daily.NextAfter(new DateTimeOffset(2026, 10, 24, 12, 0, 0, TimeSpan.Zero))!.Value;
        Assert.Equal(new DateTimeOffset(2026, 10, 25, 0, 30, 0, TimeSpan.Zero), fall);
        Assert.Equal(new DateTimeOffset(2026, 10, 26, 1, 30, 0, TimeSpan.Zero), daily.NextAfter(fall));

        // An hourly schedule steps through the repeated hour: 02:00 CEST, 02:00 CET and 03:00 CET are three runs.
        var hourly = CronSchedule.Parse("0 0 * * * *", "Europe/Berlin").Schedule!;
        var first = hourly.NextAfter(new DateTimeOffset(2026, 10, 24, 23, 30, 0, TimeSpan.Zero))!.Value;
        var second = hourly.NextAfter(first)!.Value;
        Assert.Equal(new DateTimeOffset(2026, 10, 25, 0, 0, 0, TimeSpan.Zero), first);
        Assert.Equal(new DateTimeOffset(2026, 10, 25, 1, 0, 0, TimeSpan.Zero), second);
        Assert.Equal(new DateTimeOffset(2026, 10, 25, 2, 0, 0, TimeSpan.Zero), hourly.NextAfter(second));
    }

    [Theory]
    [InlineData("nightly", true)]
    [InlineData("a", true)]
    [InlineData("Report_2026.v1-final", true)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("has space", false)]
    [InlineData("slash/name", false)]
    [InlineData("ünïcode", false)]
    [InlineData(".", false)]
    [InlineData("..", false)]
    [InlineData("...", true)]
    [InlineData(".hidden", true)]
    public void Names_AreLettersDigitsDashUnderscoreDot(string? name, bool valid)
    {
        Assert.Equal(valid, ScheduleNames.IsValid(name));
        Assert.True(ScheduleNames.IsValid(new string('x', 100)));
        Assert.False(ScheduleNames.IsValid(new string('x', 101)));
    }

    [Fact]
    public void TaskIds_AreTheSameForTheSameFiring_AndDifferForAnotherTimeOrName()
    {
        var id = ScheduleNames.TaskId("nightly", Start);

        Assert.Equal(id, ScheduleNames.TaskId("nightly", Start.ToOffset(TimeSpan.FromHours(1))));
        Assert.NotEqual(id, ScheduleNames.TaskId("nightly", Start.AddSeconds(1)));
        Assert.NotEqual(id, ScheduleNames.TaskId("nightly2", Start));
        Assert.Equal(8, id.Version);
    }

    /// <summary>The API's firing rounds for one schedule, without the database: <see cref="CronSchedule.Fire"/> when it is due.</summary>
    private sealed class SimulatedLoop(CronSchedule schedule, DateTimeOffset created)
    {
        public DateTimeOffset? Next { get; private set; } = schedule.NextAfter(created);

        public List<DateTimeOffset> Fired { get; } = [];

        public void Round(DateTimeOffset now)
        {
            if (Next is not { } due || due > now)
            {
                return;
            }

            var (fireAt, next) = schedule.Fire(due, now);
            Fired.Add(fireAt);
            Next = next;
        }
    }
}
