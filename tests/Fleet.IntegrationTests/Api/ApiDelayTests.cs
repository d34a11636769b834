using System.Globalization;
using System.Net;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Delayed tasks through the HTTP API: <c>notBefore</c> and <c>delaySeconds</c> on <c>POST /tasks</c> and on batch
/// items, what <c>GET /tasks/{id}</c> says while a task waits, a cancel before its time, and the 400s for bad values.
/// </summary>
public sealed class ApiDelayTests(FleetFixture fleet, ITestOutputHelper output) : ApiTest(fleet)
{
    [Fact]
    public async Task TaskDelayedAMonth_StaysQueuedUnpublished_SaysWaitingForDelay_AndACancelEndsIt()
    {
        var notBefore = DateTimeOffset.UtcNow.AddDays(30);
        var at = notBefore.ToOffset(TimeSpan.FromHours(2)).ToString("yyyy-MM-dd'T'HH:mm:ss.ffffffzzz", CultureInfo.InvariantCulture);
        using var submit = await Http.PostAsync("tasks", Json($$"""{"type": "noop", "notBefore": "{{at}}", "tenant": "acme"}"""));
        Assert.Equal(HttpStatusCode.Accepted, submit.StatusCode);
        var id = (Guid)(await ReadJsonAsync(submit))["id"]!;

        using (var read = await Http.GetAsync($"tasks/{id}"))
        {
            var task = await ReadJsonAsync(read);
            Assert.Equal(("queued", "delay", "acme"), ((string?)task["status"], (string?)task["waitingFor"], (string?)task["tenant"]));
            Assert.Equal(notBefore.UtcTicks / 10, ((DateTimeOffset)task["notBefore"]!).UtcTicks / 10);
            Assert.Null(task["publishedAt"]);
            Assert.Null(task["scheduleName"]);
        }

        Assert.True(await ScalarAsync<bool>(
            "SELECT status = 'queued' AND published_at IS NULL AND not_before > now() + interval '29 days' FROM fleet.tasks WHERE id = @id", ("id", id)));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));

        using var admin = Api.CreateClient(ApiHost.AdminKey);
        using var cancel = await admin.PostAsync($"tasks/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);

        var cancelled = await WaitForFinalThroughApiAsync(id);
        Assert.Equal("cancelled", (string?)cancelled["status"]);
        Assert.Null(cancelled["waitingFor"]);
        Assert.Equal(0, (int)cancelled["attempts"]!);

        // Cancelled, it left ix_tasks_due: the due relay will never read it, however long the fleet runs.
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE published_at IS NULL AND not_before IS NOT NULL"));
    }

    [Fact]
    public async Task BatchItem_WithDelaySeconds_StartsAfterItsTime_WhileTheOtherItemRunsAtOnce()
    {
        using var submit = await Http.PostAsync("tasks/batch", Json("""{"tasks": [{"type": "noop"}, {"type": "noop", "delaySeconds": 3, "tenant": "acme"}]}"""));
        Assert.Equal(HttpStatusCode.Accepted, submit.StatusCode);
        var ids = (await ReadJsonAsync(submit))["ids"]!.AsArray().Select(i => (Guid)i!).ToArray();

        var now = await WaitForFinalThroughApiAsync(ids[0]);
        using (var read = await Http.GetAsync($"tasks/{ids[1]}"))
        {
            var waiting = await ReadJsonAsync(read);
            Assert.Equal("succeeded", (string?)now["status"]);
            Assert.Null(now["notBefore"]);
            Assert.Equal(("queued", "delay"), ((string?)waiting["status"], (string?)waiting["waitingFor"]));
        }

        var delayed = await WaitForFinalThroughApiAsync(ids[1], TimeSpan.FromSeconds(30));
        var (submitted, notBefore, started) = Assert.Single(await ListAsync(
            "SELECT t.submitted_at, t.not_before, a.started_at FROM fleet.tasks t JOIN fleet.task_attempts a ON a.task_id = t.id WHERE t.id = @id",
            r => (r.GetFieldValue<DateTimeOffset>(0), r.GetFieldValue<DateTimeOffset>(1), r.GetFieldValue<DateTimeOffset>(2)), ("id", ids[1])));
        var lateness = started - notBefore;
        output.WriteLine($"batch item delaySeconds 3 (API and worker polling): started {lateness.TotalMilliseconds:0} ms after its not_before");
        Assert.Equal(("succeeded", "acme"), ((string?)delayed["status"], (string?)delayed["tenant"]));
        Assert.Equal(TimeSpan.FromSeconds(3), notBefore - submitted);
        Assert.True(started >= notBefore, $"started {-lateness.TotalMilliseconds:0} ms before its not_before");
        Assert.True(lateness <= TimeSpan.FromSeconds(5), $"started {lateness.TotalSeconds:0.0} s after its not_before");
    }

    [Fact]
    public async Task OpenApiDocument_DescribesTheDelayFields_OfRequestsAndOfTheTaskDetail()
    {
        using var response = await Http.GetAsync("openapi/v1.json");

        var schemas = (await ReadJsonAsync(response))["components"]!["schemas"]!.AsObject();
        var body = schemas["SubmitTaskBody"]!["properties"]!.AsObject();
        Assert.Superset(new HashSet<string> { "notBefore", "delaySeconds", "tenant" }, body.Select(p => p.Key).ToHashSet());
        Assert.Equal("date-time", (string?)body["notBefore"]!["format"]);
        Assert.Contains("number", body["delaySeconds"]!["type"]!.ToJsonString(), StringComparison.Ordinal);
        Assert.Contains("366 days", (string?)body["delaySeconds"]!["description"], StringComparison.Ordinal);
        var detail = schemas["TaskDetail"]!["properties"]!.AsObject();
        Assert.Superset(
            new HashSet<string> { "notBefore", "tenant", "scheduleName", "scheduledFor", "waitingFor" }, detail.Select(p => p.Key).ToHashSet());
        Assert.Contains("delay", (string?)detail["waitingFor"]!["description"], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("tasks", """{"type": "noop", "notBefore": "2026-12-24T18:00:00Z", "delaySeconds": 5}""", "delaySeconds", "not both")]
    [InlineData("tasks", """{"type": "noop", "notBefore": "2026-12-24T18:00:00"}""", "notBefore", "RFC 3339")]
    [InlineData("tasks", """{"type": "noop", "notBefore": "tomorrow"}""", "notBefore", "RFC 3339")]
    [InlineData("tasks", """{"type": "noop", "notBefore": "2999-01-01T00:00:00Z"}""", "notBefore", "366 days")]
    [InlineData("tasks", """{"type": "noop", "delaySeconds": -1}""", "delaySeconds", "from 0 to")]
    [InlineData("tasks", """{"type": "noop", "delaySeconds": 1e12}""", "delaySeconds", "from 0 to")]
    [InlineData("tasks", """{"type": "noop", "delaySeconds": "30s"}""", "delaySeconds", "from 0 to")]
    [InlineData("tasks", """{"type": "noop", "tenant": ""}""", "tenant", "non-empty")]
    [InlineData("tasks/batch", """{"tasks": [{"type": "noop"}, {"type": "noop", "notBefore": 1767225600}]}""", "tasks[1].notBefore", "RFC 3339")]
    [InlineData("tasks/batch", """{"tasks": [{"type": "noop", "delaySeconds": -0.5}]}""", "tasks[0].delaySeconds", "from 0 to")]
    public async Task BadDelayOrTenant_Is400_NamingItsJsonPath_AndStoresNothing(string path, string body, string field, string says)
    {
        using var response = await Http.PostAsync(path, Json(body));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var messages = problem["errors"]![field]!.AsArray().Select(m => (string)m!).ToArray();
        Assert.Contains(messages, m => m.Contains(says, StringComparison.Ordinal));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }
}
