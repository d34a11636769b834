using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Fleet.Worker;
using Fleet.Worker.Reconciliation;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Tasks whose message is gone (a purged queue, a broker that lost what it had delivered, a worker that vanished) are
/// found by the reconciler and run, once; nothing stays open for ever. The state
/// tests write the state each fault leaves behind, with old timestamps, and run one reconciler pass of the
/// in-process worker at once; the fault tests cause the fault for real with worker processes.
/// </summary>
public sealed class ReconcilerTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    private const string GhostWorker = "ghost:1:dead00";

    [Fact]
    public async Task APurgedQueue_WithTwoThousandQueuedTasks_IsRepublished_AndEachTaskRunsOnce()
    {
        await Fleet.StopWorkerAsync();
        var ids = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("noop", 2000));
        Assert.Equal(2000u, await QueueMessageCountAsync("fleet-io"));
        await using (var connection = await Fleet.OpenRabbitAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            await channel.QueuePurgeAsync("fleet-io");
        }

        await using var worker = WorkerProcess.Start(ReconcilingWorker("after-purge"));
        await WaitForFinalAsync(ids, TimeSpan.FromSeconds(90));

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"purged fleet-io with 2,000 queued tasks: {report}");
        Assert.Equal((0L, 0L, 0L, 0L), (report.Lost, report.DuplicateExecutions, report.Unexpected, report.OpenAttempts));
        Assert.Equal(2000L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1", ("ids", ids.ToArray())));
    }

    [Fact]
    public async Task ABrokerKilledUnderLoad_LeavesNoTaskOpen()
    {
        await Fleet.StopWorkerAsync();
        await using var first = WorkerProcess.Start(ReconcilingWorker("broker-kill-a"));
        await using var second = WorkerProcess.Start(ReconcilingWorker("broker-kill-b"));
        var ids = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("noop", 6000));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())) > 500));

        await Fleet.Servers.KillRabbitMqAsync();
        await Fleet.Servers.StartRabbitMqAsync();
        await WaitForFinalAsync(ids, TimeSpan.FromMinutes(3));

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        output.WriteLine($"RabbitMQ killed (SIGKILL) under load: {report}; republished by the reconciler: " +
            $"{await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND outcome = 'lost'", ("ids", ids.ToArray()))}");
        Assert.Equal((0L, 0L, 0L), (report.Lost, report.Unexpected, report.OpenAttempts));
        Assert.Equal(6000L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())));
    }

    [Fact]
    public async Task ARunningTask_ThatItsLiveWorkerDoesNotHold_IsRunAgain()
    {
        // What a broker crash leaves: the worker claimed the task, then the message died with the broker.
        var worker = await ScalarAsync<string>("SELECT id FROM fleet.workers WHERE host = 'in-process'");
        var id = await InsertOpenTaskAsync("running", worker);

        var pass = await ReconcileUntilAsync(r => r.Republished > 0);
        await WaitForFinalAsync([id]);

        Assert.Equal(1, pass.Republished);
        Assert.Equal(["lost", "succeeded"], await OutcomesAsync(id));
        Assert.Equal("succeeded", (await GetTaskAsync(id))!.Status);
    }

    [Fact]
    public async Task ARunningTask_OfAWorkerThatVanished_IsRunAgain_AndTheCrashIsCharged()
    {
        var id = await InsertOpenTaskAsync("running", GhostWorker);

        await ReconcileUntilAsync(r => r.Republished > 0);
        await WaitForFinalAsync([id]);

        Assert.Equal(["abandoned", "succeeded"], await OutcomesAsync(id));
        Assert.Equal(("succeeded", 2), ((await GetTaskAsync(id))!.Status, (await GetTaskAsync(id))!.Attempts));
    }

    [Fact]
    public async Task ARunningTask_HeldByItsLiveWorker_IsLeftAlone()
    {
        var id = await InsertOpenTaskAsync("running", GhostWorker);
        await ExecuteAsync("""
            INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state, held_tasks,
                                       tasks_succeeded, tasks_failed, tasks_skipped)
            VALUES (@w, 'ghost', 1, '{fleet-io}', 1, 1, now(), now(), 'running', ARRAY[@id]::uuid[], 0, 0, 0)
            """, ("w", GhostWorker), ("id", id));

        var pass = await ReconcileAsync();

        Assert.Equal(new ReconcileResult(0, 0), pass);
        Assert.Equal("running", (await GetTaskAsync(id))!.Status);
    }

    [Fact]
    public async Task ACancelAskedFor_WhileTheTasksWorkerDied_EndsCancelled_WithoutRunningAgain()
    {
        var id = await InsertOpenTaskAsync("running", GhostWorker);
        await ExecuteAsync("UPDATE fleet.tasks SET cancel_requested_at = now() WHERE id = @id", ("id", id));

        var pass = await ReconcileUntilAsync(r => r.Cancelled > 0);

        Assert.Equal(new ReconcileResult(0, 1), pass);
        var info = await GetTaskAsync(id);
        Assert.Equal(("cancelled", "Cancelled"), (info!.Status, info.ErrorType));
        Assert.Equal(["abandoned"], await OutcomesAsync(id));
    }

    [Fact]
    public async Task AQueuedTask_WhoseMessageIsGone_IsRepublished_OnlyAfterTwoPasses()
    {
        // A retry whose message was purged: queued, published long ago, its backoff long over, no message anywhere.
        var id = await InsertOpenTaskAsync("queued", null);

        var first = await ReconcileAsync();
        Assert.Equal(0, first!.Value.Republished);
        await WaitForHeartbeatsAsync();
        await ReconcileUntilAsync(r => r.Republished > 0);
        await WaitForFinalAsync([id]);

        Assert.Equal(["failed", "succeeded"], await OutcomesAsync(id));
    }

    [Fact]
    public async Task AQueuedRetry_StillWithinItsBackoff_IsLeftAlone()
    {
        // A retry as it waits now, unpublished for the due relay, and one an older version parked in a delay queue
        // (published, its message in the rung): both with their time ahead, in an idle lane.
        var waiting = await InsertOpenTaskAsync("queued", null);
        await ExecuteAsync("UPDATE fleet.tasks SET published_at = NULL, not_before = now() + interval '30 seconds' WHERE id = @id", ("id", waiting));
        var parked = await InsertOpenTaskAsync("queued", null);
        await ExecuteAsync("UPDATE fleet.tasks SET not_before = now() + interval '30 seconds' WHERE id = @id", ("id", parked));

        await ReconcileAsync();
        await WaitForHeartbeatsAsync();
        var second = await ReconcileAsync();

        Assert.Equal(0, second!.Value.Republished);
        Assert.Equal(("queued", "queued"), ((await GetTaskAsync(waiting))!.Status, (await GetTaskAsync(parked))!.Status));
        Assert.True(await ScalarAsync<bool>("SELECT published_at IS NULL FROM fleet.tasks WHERE id = @id", ("id", waiting)));
    }

    [Fact]
    public async Task ADelayedTask_SubmittedLongAgo_WaitingForItsTime_IsNotTakenForLost()
    {
        // Both were submitted ten minutes ago and never published: one is a submission whose confirm never came (lost,
        // republished: the control), the other waits on purpose for a time a day ahead and must stay as it is.
        var lost = await InsertUnpublishedAsync(notBefore: null);
        var delayed = await InsertUnpublishedAsync(notBefore: "now() + interval '1 day'");

        await ReconcileAsync();
        await WaitForHeartbeatsAsync();
        await ReconcileUntilAsync(r => r.Republished > 0);
        await WaitForFinalAsync([lost]);

        Assert.True(await ScalarAsync<bool>(
            "SELECT status = 'queued' AND published_at IS NULL AND attempts = 0 FROM fleet.tasks WHERE id = @id", ("id", delayed)));
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io"));
    }

    [Fact]
    public async Task AQueuedTask_WithMessagesReadyInItsLane_IsLeftAlone()
    {
        // A backlog: the task's message may be among the ready ones, so nothing is republished into it.
        await Fleet.StopWorkerAsync();
        await Fleet.Client.SubmitManyAsync(StandardRequests.Of("noop", 10));
        var id = await InsertOpenTaskAsync("queued", null);
        var broker = RabbitMqAddress.Parse(Fleet.AmqpUri);
        await using var publisher = new RabbitMqTaskPublisher(broker, "reconciler-test");
        using var reconciler = new TaskReconciler(Fleet.DataSource, broker, publisher,
            Options.Create(new WorkerOptions { HeartbeatSeconds = 1 }), NullLogger<TaskReconciler>.Instance);

        await reconciler.ReconcileAsync(CancellationToken.None);
        await WaitForHeartbeatsAsync();
        var second = await reconciler.ReconcileAsync(CancellationToken.None);

        Assert.Equal(0, second!.Value.Republished);
        Assert.Equal("queued", (await GetTaskAsync(id))!.Status);
    }

    private Dictionary<string, string?> ReconcilingWorker(string host)
    {
        var settings = Fleet.WorkerSettings(host, cpuConcurrency: 1);
        settings["Worker:ReconcileIntervalSeconds"] = "1";
        settings["Worker:ReconcileAfterSeconds"] = "3";
        settings["Worker:IoConcurrency"] = "256";
        return settings;
    }

    /// <summary>
    /// An open noop task with no message: started and published ten minutes ago, with its first attempt open
    /// (running) or closed as a failure awaiting its retry (queued).
    /// </summary>
    private async Task<Guid> InsertOpenTaskAsync(string status, string? workerId)
    {
        var id = Guid.CreateVersion7();
        await ExecuteAsync("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, submitted_at, published_at, started_at, worker_id)
            VALUES (@id, 'noop', 'fleet-io', @status, '{}', 1, 3, 0, now() - interval '10 minutes', now() - interval '10 minutes',
                    now() - interval '10 minutes', @worker);
            INSERT INTO fleet.task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome)
            VALUES (@id, 1, coalesce(@worker, 'earlier:1:000000'), now() - interval '10 minutes',
                    CASE WHEN @status = 'queued' THEN now() - interval '10 minutes' END,
                    CASE WHEN @status = 'queued' THEN 'failed' ELSE 'running' END);
            """, ("id", id), ("status", status), ("worker", (object?)workerId ?? DBNull.Value));
        return id;
    }

    /// <summary>A noop task submitted ten minutes ago and never published, delayed to <paramref name="notBefore"/> (SQL) or not.</summary>
    private async Task<Guid> InsertUnpublishedAsync(string? notBefore)
    {
        var id = Guid.CreateVersion7();
        await ExecuteAsync($$"""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, submitted_at, not_before)
            VALUES (@id, 'noop', 'fleet-io', 'queued', '{}', 0, 3, 0, now() - interval '10 minutes', {{notBefore ?? "NULL"}})
            """, ("id", id));
        return id;
    }

    private Task<ReconcileResult?> ReconcileAsync() =>
        Fleet.WorkerServices!.GetRequiredService<TaskReconciler>().ReconcileAsync(CancellationToken.None);

    /// <summary>Runs passes until one did what <paramref name="done"/> looks for (another test's leftovers may take a pass first).</summary>
    private async Task<ReconcileResult> ReconcileUntilAsync(Func<ReconcileResult, bool> done)
    {
        for (var i = 0; i < 10; i++)
        {
            if (await ReconcileAsync() is { } pass && done(pass))
            {
                return pass;
            }

            await WaitForHeartbeatsAsync();
        }

        Assert.Fail("no reconciler pass did the expected work");
        return default;
    }

    /// <summary>
    /// Waits until every live worker has written a heartbeat after now (by the database's clock), which the
    /// reconciler requires between two passes before it trusts that a queued task's message is gone.
    /// </summary>
    private async Task WaitForHeartbeatsAsync()
    {
        var since = await ScalarAsync<DateTime>("SELECT now()");
        Assert.True(
            await EventuallyAsync(() => ScalarAsync<bool>(
                "SELECT NOT EXISTS (SELECT 1 FROM fleet.workers WHERE state <> 'stopped' AND last_seen_at > now() - interval '20 seconds' AND last_seen_at <= @since)",
                ("since", since))),
            "a live worker wrote no heartbeat");
    }

    private Task<List<string>> OutcomesAsync(Guid id) =>
        ListAsync("SELECT outcome FROM fleet.task_attempts WHERE task_id = @id ORDER BY attempt", r => r.GetString(0), ("id", id));

    private async Task ExecuteAsync(string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = Fleet.DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        await command.ExecuteNonQueryAsync();
    }
}
