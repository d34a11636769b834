using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// /limits on the real API and database (each route's status codes, the stored row, the 400s of bad input), and
/// why a task waits: <c>waitingFor</c> of <c>GET /tasks/{id}</c>, <c>fleet.v_waiting_tasks</c> and the
/// <c>fleet_tasks_waiting</c> gauge say the same.
/// </summary>
public sealed class ApiLimitTests(FleetFixture fleet) : ApiTest(fleet)
{
    /// <summary>A queue no lane serves: tasks stored in it stay unpublished whatever the relays and dispatchers do.</summary>
    private const string Parked = "fleet-parked-test";

    protected override IDictionary<string, string?>? ApiSettings => new Dictionary<string, string?> { ["Api:WaitingSampleSeconds"] = "1" };

    [Fact]
    public async Task Limits_SetReplaceListGetDelete_AnswerWithTheirStatusCodes_AndTheRowIsWhatTheyShow()
    {
        using (var created = await Http.PutAsync("limits/type/http-get", Json("""{"perSecond": 50, "burst": 100}""")))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            Assert.Equal("/limits/type/http-get", created.Headers.Location?.OriginalString);
            var limit = await ReadJsonAsync(created);
            Assert.Equal(("type", "http-get", 50.0, 100), ((string?)limit["scope"], (string?)limit["key"], (double)limit["perSecond"]!, (int)limit["burst"]!));
            Assert.Null(limit["maxRunning"]);
            Assert.Null(limit["blockedReason"]);
        }

        // A PUT replaces every number: the burst left out is gone.
        using (var replaced = await Http.PutAsync("limits/type/http-get", Json("""{"perSecond": 0.5, "maxRunning": 20}""")))
        {
            Assert.Equal(HttpStatusCode.OK, replaced.StatusCode);
            var limit = await ReadJsonAsync(replaced);
            Assert.Equal((0.5, 20), ((double)limit["perSecond"]!, (int)limit["maxRunning"]!));
            Assert.Null(limit["burst"]);
            Assert.True((DateTimeOffset)limit["updatedAt"]! > (DateTimeOffset)limit["createdAt"]!);
        }

        Assert.Equal((0.5, true, 20), Assert.Single(await ListAsync(
            "SELECT per_second, burst IS NULL, max_running FROM fleet.limits WHERE scope = 'type' AND key = 'http-get'",
            r => (r.GetDouble(0), r.GetBoolean(1), r.GetInt32(2)))));

        // A tenant key may hold spaces, slashes (escaped in the path) and any letter.
        using (var tenant = await Http.PutAsync("limits/tenant/" + Uri.EscapeDataString("Tenant A ü"), Json("""{"maxRunning": 20}""")))
        {
            Assert.Equal(HttpStatusCode.Created, tenant.StatusCode);
        }

        // The dispatcher's blocked state shows in the list and the read.
        var since = DateTimeOffset.UtcNow.AddSeconds(-3);
        Assert.Equal(1L, await ScalarAsync<long>(
            "WITH u AS (UPDATE fleet.limits SET blocked_reason = 'concurrency-limit', blocked_since = @since WHERE scope = 'tenant' RETURNING 1) SELECT count(*) FROM u",
            ("since", since)));
        using (var list = await Http.GetAsync("limits"))
        {
            Assert.Equal(HttpStatusCode.OK, list.StatusCode);
            var limits = (await ReadJsonAsync(list)).AsArray();
            Assert.Equal(["type/http-get", "tenant/Tenant A ü"], limits.Select(l => $"{l!["scope"]}/{l["key"]}"));
            Assert.Equal("concurrency-limit", (string?)limits[1]!["blockedReason"]);
            Assert.Equal(since.UtcTicks / 10, ((DateTimeOffset)limits[1]!["blockedSince"]!).UtcTicks / 10);
        }

        using var reader = Api.CreateClient(ApiHost.ReadKey);
        using (var one = await reader.GetAsync("limits/tenant/Tenant%20A%20%C3%BC"))
        {
            Assert.Equal(HttpStatusCode.OK, one.StatusCode);
            Assert.Equal(20, (int)(await ReadJsonAsync(one))["maxRunning"]!);
        }

        using (var forbidden = await reader.PutAsync("limits/type/noop", Json("""{"maxRunning": 1}""")))
        {
            await AssertProblemAsync(forbidden, HttpStatusCode.Forbidden);
        }

        using (var forbidden = await reader.DeleteAsync("limits/type/http-get"))
        {
            await AssertProblemAsync(forbidden, HttpStatusCode.Forbidden);
        }

        using (var missing = await Http.GetAsync("limits/type/no-such"))
        {
            await AssertProblemAsync(missing, HttpStatusCode.NotFound);
        }

        using (var badScope = await Http.GetAsync("limits/queue/fleet-io"))
        {
            await AssertProblemAsync(badScope, HttpStatusCode.NotFound);
        }

        using (var deleted = await Http.DeleteAsync("limits/type/http-get"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }

        using (var again = await Http.DeleteAsync("limits/type/http-get"))
        {
            await AssertProblemAsync(again, HttpStatusCode.NotFound);
        }

        Assert.Equal(["Tenant A ü"], await ListAsync("SELECT key FROM fleet.limits", r => r.GetString(0)));
    }

    [Theory]
    [InlineData("type/noop", """{}""", "perSecond", "Give perSecond, maxRunning or both")]
    [InlineData("type/noop", """{"perSecond": 0}""", "perSecond", "above 0")]
    [InlineData("type/noop", """{"perSecond": -1}""", "perSecond", "above 0")]
    [InlineData("type/noop", """{"perSecond": 1000001}""", "perSecond", "at most 1,000,000")]
    [InlineData("type/noop", """{"perSecond": "50"}""", "perSecond", "a number")]
    [InlineData("type/noop", """{"perSecond": 5, "burst": 0}""", "burst", "from 1 to 1,000,000")]
    [InlineData("type/noop", """{"perSecond": 5, "burst": 1.5}""", "burst", "from 1 to 1,000,000")]
    [InlineData("type/noop", """{"maxRunning": 5, "burst": 10}""", "burst", "give perSecond with it")]
    [InlineData("type/noop", """{"maxRunning": 0}""", "maxRunning", "from 1 to 1,000,000")]
    [InlineData("type/noop", """{"maxRunning": 1000001}""", "maxRunning", "from 1 to 1,000,000")]
    [InlineData("type/noop", """{"maxRunning": 5, "max_running": 5}""", "max_running", "Unknown field")]
    [InlineData("queue/fleet-io", """{"maxRunning": 5}""", "scope", "type or tenant")]
    [InlineData("tenant/%20", """{"maxRunning": 5}""", "key", "1 to 200 characters")]
    [InlineData("tenant/a%0Ab", """{"maxRunning": 5}""", "key", "no control characters")]
    public async Task SetLimit_BadInput_Is400_NamingTheField_AndStoresNothing(string path, string body, string field, string says)
    {
        using var response = await Http.PutAsync("limits/" + path, Json(body));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        var messages = problem["errors"]![field]!.AsArray().Select(m => (string?)m).ToList();
        Assert.Contains(messages, m => m!.Contains(says, StringComparison.Ordinal));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.limits"));
    }

    [Fact]
    public async Task SetLimit_AKeyOf201Characters_Is400_200AreStored()
    {
        using var tooLong = await Http.PutAsync("limits/tenant/" + new string('k', 201), Json("""{"maxRunning": 5}"""));
        using var longest = await Http.PutAsync("limits/tenant/" + new string('k', 200), Json("""{"maxRunning": 5}"""));

        Assert.NotNull((await AssertProblemAsync(tooLong, HttpStatusCode.BadRequest))["errors"]!["key"]);
        Assert.Equal(HttpStatusCode.Created, longest.StatusCode);
    }

    [Fact]
    public async Task WaitingFor_OfEveryReason_IsTheViewsReason_InTheApi_TheClient_AndTheGauge()
    {
        // Delayed, through the API: stored unpublished until its time.
        using var submit = await Http.PostAsync("tasks", Json("""{"type": "noop", "delaySeconds": 3600, "tenant": "acme", "priority": 3}"""));
        Assert.Equal(HttpStatusCode.Accepted, submit.StatusCode);
        var delayed = (Guid)(await ReadJsonAsync(submit))["id"]!;

        // The other reasons, as the submitter and the dispatcher leave rows, parked in a queue nothing publishes from.
        await ScalarAsync<long>("""
            WITH l AS (INSERT INTO fleet.limits (scope, key, per_second, max_running, blocked_reason, blocked_since)
                       VALUES ('type', 'limited-test', 5, NULL, 'rate-limit', now()), ('tenant', 'busy', NULL, 2, 'concurrency-limit', now())
                       RETURNING 1)
            SELECT count(*) FROM l
            """);
        var expected = new Dictionary<Guid, string?> { [delayed] = "delay" };
        foreach (var (type, tenant, priority, dispatched, attempts, notBefore, status, reason) in new (string, string?, int, bool, int, double?, string, string?)[]
        {
            ("noop", "acme", 0, true, 0, null, "queued", "tenant-share"),
            ("noop", null, 5, true, 0, null, "queued", "priority"),
            ("limited-test", null, 0, true, 0, null, "queued", "rate-limit"),
            ("noop", "busy", 0, true, 0, null, "queued", "concurrency-limit"),
            ("noop", null, 0, false, 0, null, "queued", "publish"),
            ("noop", "acme", 0, true, 1, 600, "queued", "retry"),
            ("noop", null, 0, false, 1, null, "succeeded", null),
        })
        {
            var id = Guid.CreateVersion7();
            await ScalarAsync<long>($"""
                WITH t AS (INSERT INTO fleet.tasks (id, type, queue, status, payload, priority, tenant, dispatched, attempts, not_before)
                           VALUES (@id, @type, '{Parked}', @status, '{"{}"}', @priority, @tenant, @dispatched, @attempts,
                                   now() + make_interval(secs => @after)) RETURNING 1)
                SELECT count(*) FROM t
                """,
                ("id", id), ("type", type), ("status", status), ("priority", priority), ("tenant", (object?)tenant ?? DBNull.Value),
                ("dispatched", dispatched), ("attempts", attempts), ("after", (object?)notBefore ?? DBNull.Value));
            expected[id] = reason;
        }

        // A later step of a chain, as the submitter stores it: waiting for the step before it, at infinity.
        var step = Guid.CreateVersion7();
        await ScalarAsync<long>($"""
            WITH t AS (INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, after_task_id, not_before)
                       VALUES (@id, 'noop', '{Parked}', 'queued', '{"{}"}', 0, 0, @after, 'infinity') RETURNING 1)
            SELECT count(*) FROM t
            """, ("id", step), ("after", delayed));
        expected[step] = "previous-step";

        var view = (await ListAsync("SELECT id, waiting_for FROM fleet.v_waiting_tasks", r => (r.GetGuid(0), r.GetString(1)))).ToDictionary();
        foreach (var (id, reason) in expected)
        {
            using var read = await Http.GetAsync($"tasks/{id}");
            var task = await ReadJsonAsync(read);
            Assert.True(reason == (string?)task["waitingFor"], $"task {id}: expected {reason ?? "null"}, the API said {task["waitingFor"]}");
            Assert.Equal(reason, view.GetValueOrDefault(id));
            Assert.Equal(reason, (await GetTaskAsync(id))!.WaitingFor);
        }

        using (var read = await Http.GetAsync($"tasks/{delayed}"))
        {
            var task = await ReadJsonAsync(read);
            Assert.Equal((true, 3, "acme"), ((bool)task["dispatched"]!, (int)task["priority"]!, (string?)task["tenant"]));
        }

        // The gauge counts the same rows, by the same reasons; a reason no task has is 0, not absent.
        string metrics = "";
        Assert.True(await EventuallyAsync(async () =>
        {
            metrics = await Http.GetStringAsync("metrics");
            return new[] { "previous-step", "delay", "tenant-share", "priority", "rate-limit", "concurrency-limit", "publish", "retry" }
                .All(r => PrometheusText.Sum(metrics, "fleet_tasks_waiting", $"reason=\"{r}\"") == 1);
        }, TimeSpan.FromSeconds(20)), PrometheusText.Lines(metrics, "fleet_tasks_waiting"));
        Assert.Equal(8, PrometheusText.Samples(metrics, "fleet_tasks_waiting").Count);
        Assert.Equal(8L, await ScalarAsync<long>("SELECT count(*) FROM fleet.v_waiting_tasks"));
    }
}
