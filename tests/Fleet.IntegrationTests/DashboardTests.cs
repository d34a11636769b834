using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Microsoft.Playwright;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// The dashboard at <c>/</c>, in Debian's headless Chromium, against the real API started in-process on the fixture's
/// servers, with tasks the in-process worker really ran. Each figure the page shows is compared with SQL on the
/// same database.
/// </summary>
public sealed class DashboardTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    private static readonly TimeSpan PageWait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Dashboard_ShowsWorkersCountsFailuresLookupAndALiveChart_FromTheDatabase()
    {
        var succeeded = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 12).Select(i =>
            TaskRequest.Create("sha256", new { size_kb = 16, rounds = 1, seed = i })));
        var failed = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 3).Select(_ =>
            TaskRequest.Create("sieve", new { limit = 1_000_000_000_000L })));
        await WaitForFinalAsync([.. succeeded, .. failed]);
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();

        await SignInAsync(page, errors, api.BaseAddress.ToString());
        await Expect(page.Locator("#conn")).ToHaveAttributeAsync("data-state", "live", new() { Timeout = Ms(PageWait) });

        // The key goes out as a bearer token, never in the address; the page keeps it in this tab's sessionStorage.
        var read = await page.WaitForRequestAsync(r => r.Url.EndsWith("/stats", StringComparison.Ordinal), new() { Timeout = Ms(PageWait) });
        Assert.Equal($"Bearer {ApiHost.ReadKey}", await read.HeaderValueAsync("authorization"));
        Assert.DoesNotContain(ApiHost.ReadKey, read.Url, StringComparison.Ordinal);
        Assert.DoesNotContain(ApiHost.ReadKey, page.Url, StringComparison.Ordinal);
        Assert.Equal(ApiHost.ReadKey, await page.EvaluateAsync<string>("sessionStorage.getItem('fleet.apiKey')"));

        // Workers: every worker row the database holds as running, with its lanes; the fixture's worker has no
        // process lane, so its Children cell is a dash (the next test shows one that has).
        var workers = await ListAsync("SELECT id, cpu_concurrency, io_concurrency, process_slots FROM fleet.workers WHERE state = 'running'",
            r => (Id: r.GetString(0), Cpu: r.GetInt32(1), Io: r.GetInt32(2), Proc: r.GetInt32(3)));
        Assert.NotEmpty(workers);
        foreach (var worker in workers)
        {
            var row = page.Locator($"#workers tbody tr[data-worker=\"{worker.Id}\"]");
            await Expect(row).ToContainTextAsync(worker.Id, new() { Timeout = Ms(PageWait) });
            await Expect(row).ToContainTextAsync($"cpu {worker.Cpu} · io {worker.Io}");
            await Expect(row.Locator(".badge")).ToHaveTextAsync("running");
            Assert.Equal(0, worker.Proc);
            await Expect(row.Locator("td.lanes")).Not.ToContainTextAsync("proc");
            await Expect(row.Locator("td[data-label=\"Children\"]")).ToHaveTextAsync("–");
        }

        // Counts by status, open and finished: the page's text equals SQL on the same tables.
        var expected = await CountsFromDatabaseAsync();
        Assert.Equal(12, expected["lastHour.succeeded"]);
        Assert.Equal(3, expected["lastHour.failed"]);
        var shown = await EventuallyEqualAsync(expected, () => CountsOnPageAsync(page));
        Assert.Equal(expected, shown);

        // The latest failures carry the validation message the worker stored.
        var message = await ScalarAsync<string>("SELECT error_message FROM fleet.tasks WHERE id = @id", ("id", failed[0]));
        Assert.Contains("limit", message, StringComparison.Ordinal);
        await Expect(page.Locator("#failures tbody")).ToContainTextAsync(message);
        await Expect(page.Locator("#failures tbody tr[data-task]")).ToHaveCountAsync(3);

        // Lookup by id: status, result, attempts and worker of one task; then a failed one with its error.
        var lookedUp = succeeded[5];
        var info = await GetTaskAsync(lookedUp);
        await page.Locator("#lookup-id").FillAsync(lookedUp.ToString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Look up", Exact = true }).ClickAsync();
        var card = page.Locator($"#lookup-result article[data-task=\"{lookedUp}\"]");
        await Expect(card).ToHaveAttributeAsync("data-status", "succeeded");
        await Expect(card).ToContainTextAsync("digest");
        await Expect(card).ToContainTextAsync(info!.WorkerId!);
        await Expect(card.Locator("dt:text-is('Attempts') + dd")).ToHaveTextAsync("1");
        await page.Locator($"#failures button[title=\"{failed[1]}\"]").ClickAsync();
        var failedCard = page.Locator($"#lookup-result article[data-task=\"{failed[1]}\"]");
        await Expect(failedCard).ToHaveAttributeAsync("data-status", "failed");
        await Expect(failedCard.Locator(".error")).ToContainTextAsync(message);

        // The chart: its total is every task finished in the last 15 minutes, and it grows as more tasks finish.
        var before = await EventuallyEqualAsync(15L, () => ChartTotalAsync(page));
        Assert.Equal(15L, before);
        var more = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 20).Select(_ => TaskRequest.Create("noop", new { })));
        await WaitForFinalAsync(more);
        var finishedInWindow = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE finished_at > now() - interval '15 minutes'");
        Assert.Equal(35L, finishedInWindow);
        var after = await EventuallyEqualAsync(finishedInWindow, () => ChartTotalAsync(page));
        Assert.Equal(finishedInWindow, after);
        await Expect(page.Locator("#chart svg path.line")).ToHaveCountAsync(1);

        await SaveScreenshotAsync(page, "dashboard.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    [Fact]
    public async Task Dashboard_ShowsAWorkersProcessLane_ItsSlotsBusyChildrenAndTheirKillsAndDeaths_FromTheDatabase()
    {
        // A worker with a process lane as its heartbeat writes it; the page must show the row's figures, not derive them.
        const string id = "proc-host:4242:c0ffee";
        await using (var insert = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state,
                                       tasks_succeeded, tasks_failed, tasks_skipped,
                                       process_slots, process_busy, process_children_started, process_kills, process_deaths)
            VALUES (@id, 'proc-host', 4242, '{fleet-cpu}', 2, 8, now() - interval '5 minutes', now(), 'running', 40, 3, 0, 4, 3, 1234, 5, 2)
            """))
        {
            insert.Parameters.AddWithValue("id", id);
            await insert.ExecuteNonQueryAsync();
        }

        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();

        await SignInAsync(page, errors, api.BaseAddress.ToString());
        var row = page.Locator($"#workers tbody tr[data-worker=\"{id}\"]");
        await Expect(row).ToContainTextAsync(id, new() { Timeout = Ms(PageWait) });
        await Expect(row.Locator("td.lanes")).ToHaveTextAsync("cpu 2 · io 8 · proc 4");
        var proc = row.Locator("[role=meter][aria-label^=\"proc \"]");
        await Expect(proc).ToHaveAttributeAsync("aria-valuenow", "3");
        await Expect(proc).ToHaveAttributeAsync("aria-valuemax", "4");
        await Expect(row).ToContainTextAsync("proc 3 / 4");
        var children = row.Locator("td[data-label=\"Children\"]");
        await Expect(children).ToHaveTextAsync("1,234 started · 5 killed · 2 died");
        await Expect(children.Locator(".warn")).ToHaveCountAsync(1);
        await Expect(page.Locator("#workers-summary")).ToContainTextAsync("+ 4 proc slots");

        await SaveScreenshotAsync(page, "dashboard-process-lane.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    [Fact]
    public async Task Dashboard_ListsLimits_WithTheirNumbersAndBlockedState_FromTheDatabase()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        using var http = api.CreateClient();
        using (var perSecond = await http.PutAsJsonAsync("limits/type/http-get", new { perSecond = 50, burst = 100 }))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, perSecond.StatusCode);
        }

        using (var running = await http.PutAsJsonAsync("limits/tenant/acme", new { maxRunning = 20 }))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, running.StatusCode);
        }

        Assert.Equal(1L, await ScalarAsync<long>(
            "WITH u AS (UPDATE fleet.limits SET blocked_reason = 'concurrency-limit', blocked_since = now() WHERE key = 'acme' RETURNING 1) SELECT count(*) FROM u"));
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());

        var rate = page.Locator("#limits tbody tr[data-limit=\"type/http-get\"]");
        await Expect(rate.Locator("td[data-label=\"Per second\"]")).ToHaveTextAsync("50", new() { Timeout = Ms(PageWait) });
        await Expect(rate.Locator("td[data-label=\"Burst\"]")).ToHaveTextAsync("100");
        await Expect(rate.Locator("td[data-label=\"Max running\"]")).ToHaveTextAsync("–");
        await Expect(rate.Locator(".badge")).ToHaveTextAsync("open");
        var tenant = page.Locator("#limits tbody tr[data-limit=\"tenant/acme\"]");
        await Expect(tenant.Locator("td[data-label=\"Max running\"]")).ToHaveTextAsync("20");
        await Expect(tenant.Locator(".badge")).ToHaveTextAsync("concurrency-limit");
        await Expect(tenant.Locator("td.since")).ToHaveAttributeAsync("data-time", new System.Text.RegularExpressions.Regex(".+"));
        await Expect(page.Locator("#limits-summary")).ToHaveTextAsync("1 holding tasks back of 2");

        await SaveScreenshotAsync(page, "dashboard-limits.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    [Fact]
    public async Task Dashboard_ListsSchedules_WithTheirStateNextAndLastRun_FromTheDatabase()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        using var http = api.CreateClient();
        foreach (var (name, cron, zone) in new[] { ("every-2s", "*/2 * * * * *", "UTC"), ("nightly", "30 2 * * *", "Europe/Berlin") })
        {
            using var created = await http.PostAsJsonAsync("schedules", new { name, cron, timeZone = zone, task = new { type = "noop" } });
            Assert.Equal(System.Net.HttpStatusCode.Created, created.StatusCode);
        }

        using (var paused = await http.PostAsync("schedules/nightly/pause", null))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, paused.StatusCode);
        }

        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE schedule_name = 'every-2s'") >= 1),
            "every-2s never fired");
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());

        var active = page.Locator("#schedules tbody tr[data-schedule=\"every-2s\"]");
        await Expect(active).ToContainTextAsync("*/2 * * * * *", new() { Timeout = Ms(PageWait) });
        await Expect(active.Locator("td[data-label=\"Time zone\"]")).ToHaveTextAsync("UTC");
        await Expect(active.Locator("td[data-label=\"Task\"]")).ToHaveTextAsync("noop");
        await Expect(active.Locator(".badge")).ToHaveTextAsync("active");
        await Expect(active.Locator("td.last")).ToHaveAttributeAsync("data-time", new System.Text.RegularExpressions.Regex(".+"), new() { Timeout = Ms(PageWait) });

        // The times shown are the row's: the last run is a fire time of one of its tasks, the next one comes after it.
        var last = DateTimeOffset.Parse((await active.Locator("td.last").GetAttributeAsync("data-time"))!, CultureInfo.InvariantCulture);
        var next = DateTimeOffset.Parse((await active.Locator("td.next").GetAttributeAsync("data-time"))!, CultureInfo.InvariantCulture);
        var fired = await ListAsync("SELECT scheduled_for FROM fleet.tasks WHERE schedule_name = 'every-2s'", r => r.GetFieldValue<DateTimeOffset>(0));
        Assert.Contains(last, fired);
        Assert.True(next > last && (next - last).TotalSeconds % 2 == 0, $"next {next:O} after last {last:O}");

        var pausedRow = page.Locator("#schedules tbody tr[data-schedule=\"nightly\"]");
        await Expect(pausedRow.Locator(".badge")).ToHaveTextAsync("paused");
        await Expect(pausedRow.Locator("td[data-label=\"Time zone\"]")).ToHaveTextAsync("Europe/Berlin");
        await Expect(pausedRow.Locator("td.next")).ToHaveTextAsync("–");
        await Expect(pausedRow.Locator("td.last")).ToHaveTextAsync("–");
        await Expect(page.Locator("#schedules-summary")).ToHaveTextAsync("1 active of 2");

        using (var stopped = await http.PostAsync("schedules/every-2s/pause", null))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, stopped.StatusCode);
        }

        await SaveScreenshotAsync(page, "dashboard-schedules.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
        await WaitForFinalAsync(await ListAsync("SELECT id FROM fleet.tasks WHERE schedule_name = 'every-2s'", r => r.GetGuid(0)));
    }

    [Fact]
    public async Task Dashboard_InsertsTaskTextAsText_NeverAsMarkup()
    {
        const string hostile = "<img src=x id=injected onerror=\"document.title='pwned'\">";
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create(hostile, new { note = "<b id=bold>x</b>" }) with { Queue = "fleet-io" });
        await WaitForFinalAsync([id]);
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();

        await SignInAsync(page, errors, $"{api.BaseAddress}#task={id}");

        await Expect(page.Locator("#failures tbody")).ToContainTextAsync(hostile, new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator($"#lookup-result article[data-task=\"{id}\"]")).ToContainTextAsync(hostile);
        await page.Locator("#lookup-result summary").ClickAsync();
        await Expect(page.Locator("#lookup-result pre")).ToContainTextAsync("<b id=bold>x</b>");
        Assert.Equal(0, await page.Locator("#injected, #bold").CountAsync());
        Assert.NotEqual("pwned", await page.TitleAsync());
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    [Fact]
    public async Task Dashboard_SaysApiUnreachable_AndRecovers_WhenTheApiStopsAnswering()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());
        await Expect(page.Locator("#conn")).ToHaveAttributeAsync("data-state", "live", new() { Timeout = Ms(PageWait) });

        // Every API read fails as if the server were gone; the page itself stays loaded.
        await page.RouteAsync(url => !url.EndsWith(".js", StringComparison.Ordinal) && !url.EndsWith(".css", StringComparison.Ordinal),
            route => route.AbortAsync("connectionrefused"));

        await Expect(page.Locator("#banner")).ToBeVisibleAsync(new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator("#banner")).ToContainTextAsync("API unreachable");
        await Expect(page.Locator("#conn")).ToHaveAttributeAsync("data-state", "down");
        await SaveScreenshotAsync(page, "dashboard-unreachable.png");

        await page.UnrouteAllAsync();
        await Expect(page.Locator("#conn")).ToHaveAttributeAsync("data-state", "live", new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator("#banner")).ToBeHiddenAsync();
        // Refused requests log "Failed to load resource" by design; anything else (a script error) fails the test.
        var unexpected = errors.Where(e => !e.Contains("net::ERR_CONNECTION_REFUSED", StringComparison.Ordinal)).ToList();
        Assert.True(unexpected.Count == 0, "Console errors:\n" + string.Join('\n', unexpected));
    }

    [Fact]
    public async Task Dashboard_FitsANarrowWindow_WithoutSidewaysScrolling()
    {
        var ids = await Fleet.Client.SubmitManyAsync(
            [.. Enumerable.Range(0, 5).Select(_ => TaskRequest.Create("noop", new { })), TaskRequest.Create("sieve", new { limit = 1 })]);
        await WaitForFinalAsync(ids);
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync(390, 844);

        await SignInAsync(page, errors, api.BaseAddress.ToString());
        await Expect(page.Locator("#conn")).ToHaveAttributeAsync("data-state", "live", new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator("#failures tbody tr[data-task]")).ToHaveCountAsync(1, new() { Timeout = Ms(PageWait) });

        var overflow = await page.EvaluateAsync<int>("document.documentElement.scrollWidth - window.innerWidth");
        Assert.True(overflow <= 0, $"The page is {overflow}px wider than a 390px window.");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Workers" })).ToBeVisibleAsync();
        await SaveScreenshotAsync(page, "dashboard-narrow.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    [Fact]
    public async Task Dashboard_BrowsesAndFiltersTasks_OpensOneWithAttemptsChainAndProgress_RequeuesCancelsAndBulkRequeues()
    {
        // More tasks than a page (25), three failing (two of them in a batch), a chain of two and a delayed task to cancel.
        static TaskRequest Failing() => TaskRequest.Create("sieve", new { limit = 1_000_000_000_000L });
        var noops = await Fleet.Client.SubmitManyAsync(Enumerable.Range(0, 30).Select(_ => TaskRequest.Create("noop", new { })));
        var failed = await Fleet.Client.SubmitAsync(Failing());
        var batch = await Fleet.Client.SubmitBatchAsync([Failing(), Failing(), TaskRequest.Create("noop", new { })]);
        var chain = await Fleet.Client.SubmitAsync(TaskRequest.Create("noop", new { }) with { Then = [TaskRequest.Create("noop", new { })] });
        var step = await ScalarAsync<Guid>("SELECT next_task_id FROM fleet.tasks WHERE id = @id", ("id", chain));
        var delayed = await Fleet.Client.SubmitAsync(TaskRequest.Create("noop", new { }) with { DelaySeconds = 3600 });
        await WaitForFinalAsync([.. noops, failed, .. batch.TaskIds, chain, step]);
        Assert.Equal(1L, await ScalarAsync<long>(
            "WITH u AS (UPDATE fleet.tasks SET progress = 0.4, progress_note = 'step 2 of 5', progress_at = now() WHERE id = @id RETURNING 1) SELECT count(*) FROM u",
            ("id", delayed)));

        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        page.Dialog += (_, dialog) => _ = dialog.AcceptAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());

        // Unfiltered: the newest 25 in the order SQL gives, then More for the rest.
        var rows = page.Locator("#tasks tbody tr[data-task]");
        await Expect(rows).ToHaveCountAsync(25, new() { Timeout = Ms(PageWait) });
        var total = await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks");
        Assert.Equal(37L, total);
        var newest = await ListAsync("SELECT id::text FROM fleet.tasks ORDER BY submitted_at DESC, id DESC", r => r.GetString(0));
        Assert.Equal(newest.Take(25), await ShownTaskIdsAsync(page));
        await page.GetByRole(AriaRole.Button, new() { Name = "More", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(37);
        Assert.Equal(newest, await ShownTaskIdsAsync(page));
        await Expect(page.Locator("#tasks-more")).ToBeHiddenAsync();

        // Filters: status and type; a batch; a submitted range that starts tomorrow (and keeps the bulk requeue off).
        await page.Locator("#f-status").SelectOptionAsync("failed");
        await page.Locator("#f-type").FillAsync("sieve");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(3);
        Assert.Equal(
            await ListAsync("SELECT id::text FROM fleet.tasks WHERE status = 'failed' AND type = 'sieve' ORDER BY submitted_at DESC, id DESC", r => r.GetString(0)),
            await ShownTaskIdsAsync(page));
        await page.GetByRole(AriaRole.Button, new() { Name = "Clear", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(25);
        await page.Locator("#f-batch").FillAsync(batch.BatchId!.Value.ToString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(3);
        Assert.Equal(batch.TaskIds.Select(id => id.ToString()).Order(), (await ShownTaskIdsAsync(page)).Order());
        await page.Locator("#f-from").FillAsync(DateTime.Now.AddDays(1).ToString("yyyy-MM-dd'T'HH:mm", CultureInfo.InvariantCulture));
        var ranged = await page.RunAndWaitForRequestAsync(
            () => page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync(),
            r => r.Url.Contains("/tasks?", StringComparison.Ordinal) && r.Url.Contains("submittedSince=", StringComparison.Ordinal));
        Assert.Contains($"batchId={batch.BatchId}", ranged.Url, StringComparison.Ordinal); // the API applies the range
        await Expect(page.Locator("#tasks tbody")).ToHaveTextAsync("No task matches the filter.");
        await Expect(page.Locator("#bulk-requeue")).ToBeDisabledAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Clear", Exact = true }).ClickAsync();

        // A row opens the task: its error and one row per execution, as fleet.task_attempts holds them.
        await page.Locator("#f-status").SelectOptionAsync("failed");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await page.Locator($"#tasks button[title=\"{failed}\"]").ClickAsync();
        var card = page.Locator($"#lookup-result article[data-task=\"{failed}\"]");
        await Expect(card).ToHaveAttributeAsync("data-status", "failed");
        var message = await ScalarAsync<string>("SELECT error_message FROM fleet.tasks WHERE id = @id", ("id", failed));
        await Expect(card.Locator(".error")).ToContainTextAsync(message);
        var attempts = await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", failed));
        Assert.True(attempts >= 1);
        await Expect(card.Locator("table.executions tbody tr")).ToHaveCountAsync((int)attempts);
        await Expect(card.GetByRole(AriaRole.Button, new() { Name = "Cancel", Exact = true })).ToHaveCountAsync(0);

        // Requeue with only the read key: the API's refusal, word for word, and the operator-key panel opens.
        await card.GetByRole(AriaRole.Button, new() { Name = "Requeue", Exact = true }).ClickAsync();
        await Expect(page.Locator("#task-action")).ToContainTextAsync("HTTP 403: This endpoint needs an API key with the scope 'write'");
        await Expect(page.Locator("#operator")).ToHaveAttributeAsync("open", "");
        await page.Locator("#write-key-input").FillAsync(ApiHost.AdminKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Use operator key", Exact = true }).ClickAsync();
        await Expect(page.Locator("#operator")).ToHaveAttributeAsync("data-key", "set");
        Assert.Equal(ApiHost.AdminKey, await page.EvaluateAsync<string>("sessionStorage.getItem('fleet.writeKey')"));

        // With it: the new task opens, linked to the old one, which stays as it was.
        var requeue = await page.RunAndWaitForRequestAsync(
            () => card.GetByRole(AriaRole.Button, new() { Name = "Requeue", Exact = true }).ClickAsync(),
            r => r.Method == "POST" && r.Url.EndsWith($"/tasks/{failed}/requeue", StringComparison.Ordinal));
        Assert.Equal($"Bearer {ApiHost.AdminKey}", await requeue.HeaderValueAsync("authorization"));
        Assert.StartsWith("dashboard-", await requeue.HeaderValueAsync("idempotency-key"), StringComparison.Ordinal); // a retry of the button replays
        Assert.DoesNotContain(ApiHost.AdminKey, page.Url, StringComparison.Ordinal);
        Guid rerun = default;
        Assert.True(await EventuallyAsync(async () =>
        {
            var ids = await ListAsync("SELECT id FROM fleet.tasks WHERE requeued_from = @id", r => r.GetGuid(0), ("id", failed));
            rerun = ids.SingleOrDefault();
            return ids.Count == 1;
        }), "the requeue stored no new task");
        var rerunCard = page.Locator($"#lookup-result article[data-task=\"{rerun}\"]");
        await Expect(rerunCard.Locator("dt:text-is('Requeued from') + dd")).ToContainTextAsync(failed.ToString()[^8..]);
        await Expect(page.Locator("#task-action")).ToContainTextAsync($"Requeued as a new task {rerun}.");
        await rerunCard.GetByRole(AriaRole.Button, new() { Name = $"Open the task it reruns {failed}" }).ClickAsync();
        await Expect(card).ToHaveAttributeAsync("data-status", "failed");

        // A chain: each step links to the other.
        await page.Locator("#lookup-id").FillAsync(chain.ToString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Look up", Exact = true }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = $"Open the next task {step}" }).ClickAsync();
        var stepCard = page.Locator($"#lookup-result article[data-task=\"{step}\"]");
        await Expect(stepCard.GetByRole(AriaRole.Button, new() { Name = $"Open the task before {chain}" })).ToBeVisibleAsync();

        // The delayed task: why it waits, its progress bar, then Cancel (an admin key's right).
        await page.Locator("#lookup-id").FillAsync(delayed.ToString());
        await page.GetByRole(AriaRole.Button, new() { Name = "Look up", Exact = true }).ClickAsync();
        var delayedCard = page.Locator($"#lookup-result article[data-task=\"{delayed}\"]");
        await Expect(delayedCard.Locator("dt:text-is('Waiting for') + dd")).ToHaveTextAsync("delay");
        await Expect(delayedCard.Locator(".progress progress")).ToHaveAttributeAsync("value", "0.4");
        await Expect(delayedCard.Locator(".progress")).ToHaveTextAsync("40% · step 2 of 5");
        await delayedCard.GetByRole(AriaRole.Button, new() { Name = "Cancel", Exact = true }).ClickAsync();
        await Expect(delayedCard).ToHaveAttributeAsync("data-status", "cancelled", new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator("#task-action")).ToHaveTextAsync("Cancelled.");
        Assert.Equal("cancelled", await ScalarAsync<string>("SELECT status FROM fleet.tasks WHERE id = @id", ("id", delayed)));

        // Requeue these: every failed sieve task not requeued before, the rerun included once it failed too.
        await WaitForFinalAsync([rerun]);
        await page.Locator("#f-type").FillAsync("sieve");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter", Exact = true }).ClickAsync();
        await Expect(rows).ToHaveCountAsync(4);
        await page.GetByRole(AriaRole.Button, new() { Name = "Requeue these…", Exact = true }).ClickAsync();
        await Expect(page.Locator("#tasks-note")).ToHaveTextAsync("Requeued 3 tasks as new tasks.");
        var reruns = await ListAsync("SELECT requeued_from FROM fleet.tasks WHERE requeued_from IS NOT NULL", r => r.GetGuid(0));
        Assert.Equal(new[] { failed, rerun, batch.TaskIds[0], batch.TaskIds[1] }.Order(), reruns.Order());

        await SaveScreenshotAsync(page, "dashboard-tasks.png");
        AssertOnlyRefusals(errors, "403");
        await WaitForFinalAsync(await ListAsync("SELECT id FROM fleet.tasks", r => r.GetGuid(0)));
    }

    [Fact]
    public async Task Dashboard_ReplaysAndDiscardsDeadLetters_OneByOneAndAllOfAQueue()
    {
        // Bodies that name no task, which the worker faults into the error queues (one is markup), then two tasks
        // whose consume faulted, as MassTransit leaves them there.
        await PublishRawAsync("fleet-io", "", "<b id=bold>not a task</b>");
        await PublishRawAsync("fleet-cpu", "", "not a task 1");
        await PublishRawAsync("fleet-cpu", "", "not a task 2");
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync("fleet-io_error") == 1 && await QueueMessageCountAsync("fleet-cpu_error") == 2),
            "the worker did not fault the bodies without a task id into the error queues");
        var first = Guid.CreateVersion7();
        var second = Guid.CreateVersion7();
        foreach (var id in new[] { first, second })
        {
            await DeadLetterAsync("fleet-io_error", id.ToString(), $$$"""{"taskId":"{{{id}}}","type":"noop","payload":{}}""", "Npgsql.NpgsqlException", "Failed to connect");
        }

        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        page.Dialog += (_, dialog) => _ = dialog.AcceptAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());
        await UseOperatorKeyAsync(page, ApiHost.ApiKey);

        var letters = page.Locator("#dead-letters tbody tr[data-message]");
        await Expect(letters).ToHaveCountAsync(5, new() { Timeout = Ms(PageWait) });
        await Expect(page.Locator("#dead-queues tr[data-queue=\"fleet-io_error\"] td[data-label=\"Messages\"]")).ToHaveTextAsync("3");
        var junk = page.Locator("#dead-letters tbody tr[data-queue=\"fleet-io_error\"]").Filter(new() { HasNotText = "NpgsqlException" });
        await junk.Locator("summary").ClickAsync();
        await Expect(junk.Locator("pre")).ToHaveTextAsync("<b id=bold>not a task</b>");
        Assert.Equal(0, await page.Locator("#bold").CountAsync());

        // One: the replayed task runs; the discarded body is gone.
        await page.GetByRole(AriaRole.Button, new() { Name = $"Replay {first}", Exact = true }).ClickAsync();
        await Expect(page.Locator("#dead-note")).ToHaveTextAsync("Replayed 1 from fleet-io_error.");
        await WaitForFinalAsync([first]);
        Assert.Equal("succeeded", (await GetTaskAsync(first))!.Status);
        await junk.GetByRole(AriaRole.Button, new() { Name = "Discard" }).ClickAsync();
        await Expect(page.Locator("#dead-note")).ToHaveTextAsync("Discarded 1 from fleet-io_error.");
        await Expect(letters).ToHaveCountAsync(3);
        Assert.Equal(1u, await QueueMessageCountAsync("fleet-io_error"));

        // All of a queue: fleet-io_error replayed, fleet-cpu_error discarded.
        await page.GetByRole(AriaRole.Button, new() { Name = "Replay all of fleet-io_error", Exact = true }).ClickAsync();
        await Expect(page.Locator("#dead-note")).ToHaveTextAsync("Replayed 1 from fleet-io_error.");
        await WaitForFinalAsync([second]);
        Assert.Equal("succeeded", (await GetTaskAsync(second))!.Status);
        await page.GetByRole(AriaRole.Button, new() { Name = "Discard all of fleet-cpu_error", Exact = true }).ClickAsync();
        await Expect(page.Locator("#dead-note")).ToHaveTextAsync("Discarded 2 from fleet-cpu_error.");
        await Expect(page.Locator("#dead-letters tbody")).ToHaveTextAsync("No dead letter.");
        Assert.Equal((0u, 0u), (await QueueMessageCountAsync("fleet-io_error"), await QueueMessageCountAsync("fleet-cpu_error")));
        await page.GetByRole(AriaRole.Button, new() { Name = "Refresh", Exact = true }).ClickAsync();
        await Expect(page.Locator("#dead-summary")).ToHaveTextAsync("0 waiting");

        await SaveScreenshotAsync(page, "dashboard-dead-letters.png");
        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    /// <summary>
    /// Needs <c>POST /queues/{name}/pause|resume</c> and the <c>paused</c> flag in <c>/stats</c>' queues, built on
    /// their own branch: until that is merged the API answers 404 and this test fails.
    /// </summary>
    [Fact]
    public async Task Dashboard_PausesAndResumesALane()
    {
        await using var api = await ApiHost.StartAsync(Fleet);
        await using var chromium = await HeadlessChromium.LaunchAsync();
        var (page, errors) = await chromium.NewPageAsync();
        page.Dialog += (_, dialog) => _ = dialog.Type == "prompt" ? dialog.AcceptAsync("disk swap") : dialog.AcceptAsync();
        await SignInAsync(page, errors, api.BaseAddress.ToString());
        await UseOperatorKeyAsync(page, ApiHost.ApiKey);

        var lane = page.Locator("#queues tbody tr[data-queue=\"fleet-io\"]");
        try
        {
            await PauseAndResumeAsync(page, lane);
        }
        finally
        {
            // Resumed even when the test fails halfway: a lane left paused stops the fixture's worker taking its tasks.
            await ScalarAsync<long>("WITH d AS (DELETE FROM fleet.queue_pauses RETURNING 1) SELECT count(*) FROM d");
        }

        Assert.True(errors.Count == 0, "Console errors:\n" + string.Join('\n', errors));
    }

    private async Task PauseAndResumeAsync(IPage page, ILocator lane)
    {
        await lane.GetByRole(AriaRole.Button, new() { Name = "Pause fleet-io", Exact = true }).ClickAsync(new() { Timeout = Ms(PageWait) });
        await Expect(lane).ToHaveAttributeAsync("data-paused", "true", new() { Timeout = Ms(PageWait) });
        await Expect(lane.Locator(".badge")).ToHaveTextAsync("paused");
        Assert.Equal("disk swap", await ScalarAsync<string>("SELECT reason FROM fleet.queue_pauses WHERE queue = 'fleet-io'"));
        await Expect(page.Locator("#queues tbody tr[data-queue=\"fleet-cpu\"]")).ToHaveAttributeAsync("data-paused", "false");

        await lane.GetByRole(AriaRole.Button, new() { Name = "Resume fleet-io", Exact = true }).ClickAsync();
        await Expect(lane).ToHaveAttributeAsync("data-paused", "false", new() { Timeout = Ms(PageWait) });
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.queue_pauses"));
    }

    private static ILocatorAssertions Expect(ILocator locator) => Assertions.Expect(locator);

    /// <summary>
    /// Opens the dashboard as an operator does: the API refuses the page's first reads (401), the page asks for a key,
    /// a read-only key goes into its form. The browser logs each refused request as a console error; those, and only
    /// those, are expected here.
    /// </summary>
    private static async Task SignInAsync(IPage page, List<string> errors, string url)
    {
        await page.GotoAsync(url);
        var form = page.Locator("#key-form");
        await Expect(form).ToBeVisibleAsync(new() { Timeout = Ms(PageWait) });
        await page.Locator("#key-input").FillAsync(ApiHost.ReadKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Use key", Exact = true }).ClickAsync();
        await Expect(form).ToBeHiddenAsync(new() { Timeout = Ms(PageWait) });
        lock (errors)
        {
            Assert.All(errors, e => Assert.Contains("401", e, StringComparison.Ordinal));
            errors.Clear();
        }
    }

    /// <summary>Gives the page an operator key through its panel, as an operator does after signing in with a read key.</summary>
    private static async Task UseOperatorKeyAsync(IPage page, string key)
    {
        await page.Locator("#operator summary").ClickAsync();
        await page.Locator("#write-key-input").FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Use operator key", Exact = true }).ClickAsync();
        await Expect(page.Locator("#operator")).ToHaveAttributeAsync("data-key", "set");
    }

    private static Task<string[]> ShownTaskIdsAsync(IPage page) =>
        page.Locator("#tasks tbody tr[data-task]").EvaluateAllAsync<string[]>("rows => rows.map(r => r.dataset.task)");

    /// <summary>The browser logs each refused request ("status of 403") as a console error; those are expected, nothing else.</summary>
    private static void AssertOnlyRefusals(List<string> errors, string status)
    {
        var unexpected = errors.Where(e => !e.Contains($"status of {status}", StringComparison.Ordinal)).ToList();
        Assert.True(unexpected.Count == 0, "Console errors:\n" + string.Join('\n', unexpected));
    }

    private static float Ms(TimeSpan span) => (float)span.TotalMilliseconds;

    /// <summary>Saves a full-page PNG to the repository's <c>TestResults/</c> (where <c>make test</c> puts its results).</summary>
    private async Task SaveScreenshotAsync(IPage page, string name)
    {
        var folder = Directory.CreateDirectory(Repository.PathTo("TestResults")).FullName;
        var path = Path.Combine(folder, name);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        output.WriteLine($"screenshot: {path}");
        await Console.Error.WriteLineAsync($"[dashboard] screenshot: {path}");
    }

    private async Task<SortedDictionary<string, long>> CountsFromDatabaseAsync()
    {
        var rows = await ListAsync("""
            SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),
                   count(*) FILTER (WHERE status = 'succeeded' AND finished_at > now() - interval '1 hour'),
                   count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - interval '1 hour'),
                   count(*) FILTER (WHERE status = 'timed_out' AND finished_at > now() - interval '1 hour'),
                   count(*) FILTER (WHERE status = 'cancelled' AND finished_at > now() - interval '1 hour'),
                   count(*) FILTER (WHERE status = 'succeeded' AND finished_at > now() - interval '24 hours'),
                   count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - interval '24 hours'),
                   count(*) FILTER (WHERE status = 'timed_out' AND finished_at > now() - interval '24 hours'),
                   count(*) FILTER (WHERE status = 'cancelled' AND finished_at > now() - interval '24 hours')
            FROM fleet.tasks
            """, r => Enumerable.Range(0, 10).Select(r.GetInt64).ToArray());
        var v = rows.Single();
        return new SortedDictionary<string, long>(StringComparer.Ordinal)
        {
            ["open.queued"] = v[0],
            ["open.running"] = v[1],
            ["lastHour.succeeded"] = v[2],
            ["lastHour.failed"] = v[3],
            ["lastHour.timedOut"] = v[4],
            ["lastHour.cancelled"] = v[5],
            ["last24h.succeeded"] = v[6],
            ["last24h.failed"] = v[7],
            ["last24h.timedOut"] = v[8],
            ["last24h.cancelled"] = v[9],
        };
    }

    /// <summary>The counts as the page shows them to a reader: its visible text, thousands separators removed.</summary>
    private static async Task<SortedDictionary<string, long>> CountsOnPageAsync(IPage page)
    {
        var counts = new SortedDictionary<string, long>(StringComparer.Ordinal)
        {
            ["open.queued"] = ParseShown(await page.Locator("#open-queued").InnerTextAsync()),
            ["open.running"] = ParseShown(await page.Locator("#open-running").InnerTextAsync()),
        };
        foreach (var period in new[] { "lastHour", "last24h" })
        {
            foreach (var status in new[] { "succeeded", "failed", "timedOut", "cancelled" })
            {
                counts[$"{period}.{status}"] = ParseShown(await page.Locator($"#counts-{period} dd[data-status=\"{status}\"]").InnerTextAsync());
            }
        }

        return counts;
    }

    private static long ParseShown(string text) =>
        long.TryParse(text.Replace(",", "", StringComparison.Ordinal).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1;

    private static async Task<long> ChartTotalAsync(IPage page) =>
        ParseShown(await page.Locator("#chart").GetAttributeAsync("data-total") ?? "");

    /// <summary>Reads until the page shows <paramref name="expected"/> or the wait ends; returns what it read last.</summary>
    private static async Task<T> EventuallyEqualAsync<T>(T expected, Func<Task<T>> read)
    {
        var deadline = DateTime.UtcNow + PageWait;
        var seen = await read();
        while (!EqualityComparer<T>.Default.Equals(seen, expected) && !Equivalent(seen, expected) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(250);
            seen = await read();
        }

        return seen;
    }

    private static bool Equivalent<T>(T a, T b) =>
        a is IDictionary<string, long> x && b is IDictionary<string, long> y && x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out var v) && v == p.Value);
}
