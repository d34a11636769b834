using System.Net;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// Retries through PostgreSQL's due relay, with real worker processes, the real API (its due relay included) and the
/// real broker: a failed attempt leaves its task queued and unpublished with <c>not_before</c> = finish + backoff, and
/// the relay publishes it when that time comes, never before. Lateness (start minus not_before, both on this
/// machine's clock) is printed; the upper bound asserted is only a generous one.
/// </summary>
public sealed class RetryDueRelayTests(FleetFixture fleet, ITestOutputHelper output) : ApiTest(fleet)
{
    /// <summary>Generous for a loaded 2-core machine; the relays poll every 250-500 ms, so an idle one does far better.</summary>
    private static readonly TimeSpan MaxLateness = TimeSpan.FromSeconds(5);

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();

        // Only this class's worker processes run tasks (fault-flaky counts its failures per process).
        await Fleet.StopWorkerAsync();
    }

    [Fact]
    public async Task ATaskThatFailsTwice_WaitsQueuedUnpublished_SaysRetry_AndEachRetryStartsAtItsNotBefore()
    {
        // Backoffs of 5 s and 10 s: long enough that a loaded machine reads each wait before it is over.
        await using var worker = WorkerProcess.Start(Worker("retry-twice", retryBaseSeconds: 5));
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 2 }) with { MaxAttempts = 3, Tenant = "acme" });

        var waits = new List<DateTimeOffset>();
        for (var attempts = 1; attempts <= 2; attempts++)
        {
            var notBefore = await WaitingRetryAsync(id, attempts, worker);
            waits.Add(notBefore);

            // What the API says of it meanwhile.
            using var read = await Http.GetAsync($"tasks/{id}");
            var task = await ReadJsonAsync(read);
            Assert.Equal(("queued", "retry", attempts), ((string?)task["status"], (string?)task["waitingFor"], (int)task["attempts"]!));
            Assert.Null(task["publishedAt"]);
            Assert.Equal(notBefore.UtcTicks / 10, ((DateTimeOffset)task["notBefore"]!).UtcTicks / 10);
        }

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(45));
        var attemptRows = await AttemptsAsync(id);
        Assert.Equal(["failed", "failed", "succeeded"], attemptRows.Select(a => a.Outcome));
        Assert.Equal(("succeeded", "acme"), (await ScalarAsync<string>("SELECT status FROM fleet.tasks WHERE id = @id", ("id", id)),
            await ScalarAsync<string>("SELECT tenant FROM fleet.tasks WHERE id = @id", ("id", id))));

        // The backoffs: 5 s, then 10 s, each +-20%, counted from the failed attempt's end.
        AssertBackoff(attemptRows[0].FinishedAt, waits[0], 5);
        AssertBackoff(attemptRows[1].FinishedAt, waits[1], 10);
        AssertStartedAtItsTime(attemptRows[1].StartedAt, waits[0], "first retry");
        AssertStartedAtItsTime(attemptRows[2].StartedAt, waits[1], "second retry");

        // Nothing of it waited in the broker: no delay queue exists, and the lane holds no message.
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));
        Assert.False(await QueueExistsAsync(QueueTopology.RetryRungName("fleet-io", 8)));
        Assert.False(await QueueExistsAsync(QueueTopology.RetryRungName("fleet-io", 16)));
    }

    [Fact]
    public async Task ARetryCancelledWhileItWaits_EndsCancelled_AndNeverRunsAgain()
    {
        await using var worker = WorkerProcess.Start(Worker("retry-cancel", retryBaseSeconds: 2));
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 5 }) with { MaxAttempts = 3 });
        var notBefore = await WaitingRetryAsync(id, 1, worker);

        using var admin = Api.CreateClient(ApiHost.AdminKey);
        using (var cancel = await admin.PostAsync($"tasks/{id}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
            Assert.Equal("cancelled", (string?)(await ReadJsonAsync(cancel))["status"]);
        }

        // Past its time and past a few rounds of every relay: still cancelled, one attempt, nothing published.
        var pastItsTime = notBefore + TimeSpan.FromSeconds(2) - DateTimeOffset.UtcNow;
        await Task.Delay(pastItsTime > TimeSpan.Zero ? pastItsTime : TimeSpan.Zero);
        using var read = await Http.GetAsync($"tasks/{id}");
        var task = await ReadJsonAsync(read);
        Assert.Equal(("cancelled", 1), ((string?)task["status"], (int)task["attempts"]!));
        Assert.Null(task["waitingFor"]);
        Assert.Equal(["failed"], (await AttemptsAsync(id)).Select(a => a.Outcome));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));
        Assert.False(worker.HasExited, worker.Output);
    }

    [Fact]
    public async Task AWorkerKilledRightAfterCommittingARetry_LeavesItToAnotherWorker_WhichRunsItNotBeforeItsTime()
    {
        var hosts = new[] { "retry-kill-a", "retry-kill-b" };
        await using var a = WorkerProcess.Start(Worker(hosts[0], retryBaseSeconds: 3));
        await using var b = WorkerProcess.Start(Worker(hosts[1], retryBaseSeconds: 3));
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 });

        // SIGKILL whichever ran the first attempt, as soon as its retry is committed (polled every 20 ms): its message may
        // still be unacknowledged, and then comes back to the survivor at once, long before the retry's time.
        var notBefore = await WaitingRetryAsync(id, 1, a, b);
        var firstWorker = (await AttemptsAsync(id))[0].WorkerId;
        var (killed, survivor, survivorHost) = firstWorker.StartsWith(a.WorkerIdPrefix(hosts[0]), StringComparison.Ordinal) ? (a, b, hosts[1]) : (b, a, hosts[0]);
        await killed.KillAsync();

        // The survivor's first execution of the key fails too (fault-flaky counts per process): a second retry, then success.
        var second = await WaitingRetryAsync(id, 2, survivor);
        await WaitForFinalAsync([id], TimeSpan.FromSeconds(60));
        var attemptRows = await AttemptsAsync(id);
        Assert.Equal(["failed", "failed", "succeeded"], attemptRows.Select(r => r.Outcome));
        Assert.All(attemptRows.Skip(1), r => Assert.StartsWith(survivor.WorkerIdPrefix(survivorHost), r.WorkerId, StringComparison.Ordinal));
        AssertStartedAtItsTime(attemptRows[1].StartedAt, notBefore, "retry after the kill");
        AssertStartedAtItsTime(attemptRows[2].StartedAt, second, "second retry");
        Assert.False(survivor.HasExited, survivor.Output);
    }

    [Fact]
    public async Task ARetryWaitingThroughABrokerOutage_StaysQueued_AndRunsOnceTheBrokerIsBack()
    {
        await using var worker = WorkerProcess.Start(Worker("retry-outage", retryBaseSeconds: 5));
        var id = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("fault-flaky", new { key = Guid.NewGuid().ToString(), failTimes = 1 }) with { MaxAttempts = 3 });
        var notBefore = await WaitingRetryAsync(id, 1, worker);

        // Killed, not stopped: a graceful stop takes seconds, during which the relays could still publish.
        await Fleet.Servers.KillRabbitMqAsync();
        try
        {
            Assert.True(await ScalarAsync<bool>("SELECT published_at IS NULL AND not_before > now() FROM fleet.tasks WHERE id = @id", ("id", id)),
                "the retry's time came before the broker was down: nothing of the outage was tested");

            // Its time passes while no relay can publish: the task keeps waiting in PostgreSQL, queued and unpublished.
            var pastItsTime = notBefore + TimeSpan.FromSeconds(2) - DateTimeOffset.UtcNow;
            await Task.Delay(pastItsTime > TimeSpan.Zero ? pastItsTime : TimeSpan.Zero);
            Assert.True(await ScalarAsync<bool>(
                "SELECT status = 'queued' AND published_at IS NULL AND attempts = 1 FROM fleet.tasks WHERE id = @id", ("id", id)));
        }
        finally
        {
            await Fleet.Servers.StartRabbitMqAsync();
        }

        await WaitForFinalAsync([id], TimeSpan.FromSeconds(90));
        var attemptRows = await AttemptsAsync(id);
        Assert.Equal(["failed", "succeeded"], attemptRows.Select(r => r.Outcome));
        Assert.True(attemptRows[1].StartedAt >= notBefore, "the retry started before its not_before");
        output.WriteLine($"retry through a broker outage: started {(attemptRows[1].StartedAt - notBefore).TotalSeconds:0.0} s after its not_before");
    }

    private Dictionary<string, string?> Worker(string host, double retryBaseSeconds)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency: 1);
        settings["Worker:RetryBaseSeconds"] = retryBaseSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return settings;
    }

    /// <summary>
    /// Waits (polling every 20 ms) until the task's <paramref name="attempts"/>-th attempt failed and its retry waits:
    /// queued, unpublished, with a not_before ahead, which it returns.
    /// </summary>
    private async Task<DateTimeOffset> WaitingRetryAsync(Guid id, int attempts, params WorkerProcess[] workers)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var row = await ListAsync(
                "SELECT status, attempts, published_at IS NULL, not_before, not_before > now() FROM fleet.tasks WHERE id = @id",
                r => (Status: r.GetString(0), Attempts: r.GetInt32(1), Unpublished: r.GetBoolean(2),
                      NotBefore: r.IsDBNull(3) ? (DateTimeOffset?)null : r.GetFieldValue<DateTimeOffset>(3), Ahead: !r.IsDBNull(4) && r.GetBoolean(4)),
                ("id", id));
            if (row is [{ Status: "queued", Attempts: var n } waiting] && n == attempts)
            {
                Assert.True(waiting.Unpublished, "a waiting retry has published_at set");
                Assert.True(waiting.Ahead, "the retry was found waiting only after its not_before");
                return waiting.NotBefore!.Value;
            }

            Assert.True(row.Count == 0 || row[0].Attempts <= attempts, $"the retry after attempt {attempts} was never seen waiting: {string.Join(", ", row)}");
            await Task.Delay(20);
        }

        Assert.Fail($"attempt {attempts} of {id} never failed into a waiting retry:\n{string.Join("\n---\n", workers.Select(w => w.Output))}");
        return default;
    }

    private Task<List<(string Outcome, string WorkerId, DateTimeOffset StartedAt, DateTimeOffset FinishedAt)>> AttemptsAsync(Guid id) => ListAsync(
        "SELECT outcome, worker_id, started_at, coalesce(finished_at, started_at) FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt",
        r => (r.GetString(0), r.GetString(1), r.GetFieldValue<DateTimeOffset>(2), r.GetFieldValue<DateTimeOffset>(3)), ("id", id));

    private static void AssertBackoff(DateTimeOffset failedAt, DateTimeOffset notBefore, double seconds) =>
        Assert.InRange((notBefore - failedAt).TotalSeconds, seconds * 0.8 - 0.001, seconds * 1.2 + 0.001);

    private void AssertStartedAtItsTime(DateTimeOffset started, DateTimeOffset notBefore, string what)
    {
        var lateness = started - notBefore;
        output.WriteLine($"{what}: started {lateness.TotalMilliseconds:0} ms after its not_before");
        Assert.True(started >= notBefore, $"{what} started {-lateness.TotalMilliseconds:0} ms before its not_before");
        Assert.True(lateness <= MaxLateness, $"{what} started {lateness.TotalSeconds:0.0} s after its not_before");
    }

    private async Task<bool> QueueExistsAsync(string queue)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            await channel.QueueDeclarePassiveAsync(queue);
            return true;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return false;
        }
    }
}
