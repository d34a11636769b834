using System.Net;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>/schedules on the real API and database: each route's status codes, the stored row, and the 400s of bad input.</summary>
public sealed class ApiScheduleTests(FleetFixture fleet) : ApiTest(fleet)
{
    private const string Noop = """{"type": "noop", "payload": {}}""";

    [Fact]
    public async Task Schedules_CreateListGetPauseResumeDelete_AnswerWithTheirStatusCodes()
    {
        // A daily 02:30 in Berlin: nothing fires during the test; the stored next time is Cronos's answer in that zone.
        var body = $$"""{"name": "nightly.report-1", "cron": "30 2 * * *", "timeZone": "Europe/Berlin", "task": {{Noop}}}""";
        using var created = await Http.PostAsync("schedules", Json(body));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal("/schedules/nightly.report-1", created.Headers.Location?.OriginalString);
        var schedule = await ReadJsonAsync(created);
        Assert.Equal("nightly.report-1", (string?)schedule["name"]);
        Assert.Equal("30 2 * * *", (string?)schedule["cron"]);
        Assert.Equal("Europe/Berlin", (string?)schedule["timeZone"]);
        Assert.Equal("noop", (string?)schedule["task"]!["type"]);
        Assert.False((bool)schedule["paused"]!);
        Assert.Null(schedule["lastFiredAt"]);
        var next = (DateTimeOffset)schedule["nextFireAt"]!;
        var berlin = TimeZoneInfo.ConvertTime(next, TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin"));
        Assert.Equal((2, 30, 0), (berlin.Hour, berlin.Minute, berlin.Second));
        Assert.InRange(next - DateTimeOffset.UtcNow, TimeSpan.Zero, TimeSpan.FromHours(25));

        // The row in SQL is what the API answered.
        var row = await ListAsync(
            "SELECT cron, time_zone, task->>'type', paused, next_fire_at FROM fleet.schedules WHERE name = 'nightly.report-1'",
            r => (Cron: r.GetString(0), Zone: r.GetString(1), Type: r.GetString(2), Paused: r.GetBoolean(3), Next: r.GetFieldValue<DateTimeOffset>(4)));
        Assert.Equal(("30 2 * * *", "Europe/Berlin", "noop", false, next), Assert.Single(row));

        using var again = await Http.PostAsync("schedules", Json(body.Replace("30 2", "0 3", StringComparison.Ordinal)));
        await AssertProblemAsync(again, HttpStatusCode.Conflict);
        Assert.Equal("30 2 * * *", await ScalarAsync<string>("SELECT cron FROM fleet.schedules WHERE name = 'nightly.report-1'"));

        using var list = await Http.GetAsync("schedules");
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        Assert.Equal(["nightly.report-1"], (await ReadJsonAsync(list)).AsArray().Select(s => (string?)s!["name"]));

        // Reads take the read key; writes refuse it.
        using var reader = Api.CreateClient(ApiHost.ReadKey);
        using (var one = await reader.GetAsync("schedules/nightly.report-1"))
        {
            Assert.Equal(HttpStatusCode.OK, one.StatusCode);
            Assert.Equal(next, (DateTimeOffset)(await ReadJsonAsync(one))["nextFireAt"]!);
        }

        using (var forbidden = await reader.PostAsync("schedules/nightly.report-1/pause", null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        }

        using var anonymous = Api.CreateClient(apiKey: null);
        using (var unauthorized = await anonymous.PostAsync("schedules", Json(body)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
        }

        using (var missing = await Http.GetAsync("schedules/no-such"))
        {
            await AssertProblemAsync(missing, HttpStatusCode.NotFound);
        }

        using (var paused = await Http.PostAsync("schedules/nightly.report-1/pause", null))
        {
            Assert.Equal(HttpStatusCode.OK, paused.StatusCode);
            var view = await ReadJsonAsync(paused);
            Assert.True((bool)view["paused"]!);
            Assert.Null(view["nextFireAt"]);
        }

        Assert.True(await ScalarAsync<bool>("SELECT paused AND next_fire_at IS NULL FROM fleet.schedules WHERE name = 'nightly.report-1'"));
        using (var resumed = await Http.PostAsync("schedules/nightly.report-1/resume", null))
        {
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
            var view = await ReadJsonAsync(resumed);
            Assert.False((bool)view["paused"]!);
            Assert.Equal(next, (DateTimeOffset)view["nextFireAt"]!);
        }

        using (var pauseMissing = await Http.PostAsync("schedules/no-such/pause", null))
        {
            await AssertProblemAsync(pauseMissing, HttpStatusCode.NotFound);
        }

        using (var deleted = await Http.DeleteAsync("schedules/nightly.report-1"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }

        using (var deletedAgain = await Http.DeleteAsync("schedules/nightly.report-1"))
        {
            await AssertProblemAsync(deletedAgain, HttpStatusCode.NotFound);
        }

        using (var gone = await Http.GetAsync("schedules/nightly.report-1"))
        {
            await AssertProblemAsync(gone, HttpStatusCode.NotFound);
        }

        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.schedules"));
    }

    [Theory]
    [InlineData("""{"name": "bad cron", "cron": "*/2 * * * * *", "task": {"type": "noop"}}""", "name")]
    [InlineData("""{"name": "", "cron": "*/2 * * * * *", "task": {"type": "noop"}}""", "name")]
    [InlineData("""{"cron": "*/2 * * * * *", "task": {"type": "noop"}}""", "name")]
    [InlineData("""{"name": "x", "cron": "61 * * * *", "task": {"type": "noop"}}""", "cron")]
    [InlineData("""{"name": "x", "cron": "* * *", "task": {"type": "noop"}}""", "cron")]
    [InlineData("""{"name": "x", "cron": "* * * * * * *", "task": {"type": "noop"}}""", "cron")]
    [InlineData("""{"name": "x", "task": {"type": "noop"}}""", "cron")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "timeZone": "Mars/Olympus_Mons", "task": {"type": "noop"}}""", "timeZone")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "timeZone": 2, "task": {"type": "noop"}}""", "timeZone")]
    [InlineData("""{"name": "x", "cron": "0 * * * *"}""", "task")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": "noop"}""", "task")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": {"type": "noop"}, "every": "1m"}""", "every")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": {"type": "noop", "notBefore": "2030-01-01T00:00:00Z"}}""", "task.notBefore")]
    public async Task Schedules_RefuseABadNameCronTimeZoneOrTask_With400AndTheReason(string body, string field)
    {
        using var response = await Http.PostAsync("schedules", Json(body));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var errors = problem["errors"]!.AsObject();
        Assert.True(errors.ContainsKey(field), $"no error for {field}: {problem.ToJsonString()}");
        Assert.False(string.IsNullOrWhiteSpace((string?)errors[field]![0]));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.schedules"));
    }

    [Theory]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": {"type": "no-such-type"}}""", "type")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": {"type": "noop", "payload": [1]}}""", "payload")]
    [InlineData("""{"name": "x", "cron": "0 * * * *", "task": {"type": "noop", "maxAttempts": "3"}}""", "maxAttempts")]
    public async Task Schedules_ValidateTheTaskAsPostTasksDoes(string body, string field)
    {
        using var response = await Http.PostAsync("schedules", Json(body));
        using var asTask = await Http.PostAsync("tasks", Json(JsonNode.Parse(body)!["task"]!.ToJsonString()));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var taskProblem = await AssertProblemAsync(asTask, HttpStatusCode.BadRequest);
        Assert.True(problem["errors"]!.AsObject().ContainsKey(field), problem.ToJsonString());
        Assert.Equal(taskProblem["errors"]!.ToJsonString(), problem["errors"]!.ToJsonString());
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.schedules"));
    }
}
