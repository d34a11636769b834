using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Npgsql;

namespace Fleet.IntegrationTests;

/// <summary>
/// The worker's ledger writes the claims and the completions of one batch in one transaction (one commit where
/// there were two), and a row that PostgreSQL refuses must not take the rows batched with it down too: those tasks
/// already ran, and a lost result would run them again. The refused row itself is kept, in storable form.
/// </summary>
public sealed class TaskLedgerTests(FleetFixture fleet) : FleetTest(fleet)
{
    private const string WorkerId = "ledger-test:1:000000";

    [Fact]
    public async Task Flush_WritesClaimsAndCompletionsInOneTransaction()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var (running, fresh) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        var first = await ledger.ClaimAsync(Claim(running));
        Assert.True(first.Claimed);

        var outcomes = await ledger.FlushAsync([new LedgerWrite(Claim(fresh), null), new LedgerWrite(null, Completion(running, first.Attempt))], CancellationToken.None);

        Assert.Equal(new ClaimResult(true, 1), outcomes[0].Claim);
        Assert.True(outcomes[1].Finalized);
        Assert.All(outcomes, o => Assert.Null(o.Error));
        Assert.Equal("succeeded", await ScalarAsync<string>("SELECT status FROM fleet.tasks WHERE id = @id", ("id", running)));
        Assert.Equal("running", await ScalarAsync<string>("SELECT status FROM fleet.tasks WHERE id = @id", ("id", fresh)));

        // The same transaction wrote both rows: the completed task's new version and the claimed task's row.
        var writers = await ListAsync("SELECT xmin::text FROM fleet.tasks WHERE id = ANY(@ids)", r => r.GetString(0), ("ids", new[] { running, fresh }));
        Assert.Equal(2, writers.Count);
        Assert.Single(writers.Distinct());
    }

    [Fact]
    public async Task ARetrysCompletion_LeavesTheTaskUnpublishedForTheDueRelay_AndNoCopyOfItsMessageClaimsItBeforeItsTime()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var id = Guid.CreateVersion7();
        var first = await ledger.ClaimAsync(Claim(id));
        var finished = DateTimeOffset.UtcNow;
        var notBefore = finished.AddSeconds(60);

        Assert.True(await ledger.CompleteAsync(new TaskCompletion(
            id, first.Attempt, "queued", "failed", null, "System.InvalidOperationException", "try again", finished, finished, 1, null, NotBefore: notBefore)));

        // Queued, unpublished, with its time: in ix_tasks_due, where the due relay finds it.
        var (status, unpublished, storedNotBefore) = Assert.Single(await ListAsync(
            "SELECT status, published_at IS NULL, not_before FROM fleet.tasks WHERE id = @id",
            r => (r.GetString(0), r.GetBoolean(1), r.GetFieldValue<DateTimeOffset>(2)), ("id", id)));
        Assert.Equal(("queued", true), (status, unpublished));
        Assert.Equal(notBefore.UtcTicks / 10, storedNotBefore.UtcTicks / 10);

        // The failed attempt's message redelivered (its worker died before the ack), or any other copy: not claimed.
        Assert.False((await ledger.ClaimAsync(Claim(id) with { Redelivered = true })).Claimed);
        Assert.False((await ledger.ClaimAsync(Claim(id))).Claimed);
        Assert.Equal(1, await ScalarAsync<int>("SELECT attempts FROM fleet.tasks WHERE id = @id", ("id", id)));
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));

        // The producer's stamp for its first publish, late (its confirm came after the attempt failed): the retry is
        // not stamped, or the due relay would never see it. The relay's own stamp for the retry is.
        await StampAsync(id, attempts: 0);
        Assert.True(await ScalarAsync<bool>("SELECT published_at IS NULL FROM fleet.tasks WHERE id = @id", ("id", id)));
        await StampAsync(id, attempts: 1);
        Assert.True(await ScalarAsync<bool>("SELECT published_at IS NOT NULL FROM fleet.tasks WHERE id = @id", ("id", id)));

        // Once the relay published it, its message is claimed: the second attempt.
        Assert.Equal(new ClaimResult(true, 2), await ledger.ClaimAsync(Claim(id)));

        // A first attempt is claimed however its not_before stands: its producer published it (a clock ahead of the
        // database's took it for due) and stamps it after the confirm, so no relay would ever send it again.
        var delayed = Guid.CreateVersion7();
        await using (var insert = Fleet.DataSource.CreateCommand("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, submitted_at, not_before)
            VALUES (@id, 'noop', 'fleet-io', 'queued', '{}', 0, 3, 0, now(), now() + interval '60 seconds')
            """))
        {
            insert.Parameters.AddWithValue("id", delayed);
            await insert.ExecuteNonQueryAsync();
        }

        Assert.True((await ledger.ClaimAsync(Claim(delayed))).Claimed);
    }

    [Fact]
    public async Task Flush_OneClaimPostgresRefusesAmongMany_IsStoredAsBase64_AndTheRestCommitOnce()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var ran = Enumerable.Range(0, 100).Select(_ => Guid.CreateVersion7()).ToList();
        var claimed = await ClaimEachAsync(ledger, ran);

        // Valid JSON that jsonb refuses (a NUL character), in the middle of a round of claims and completions.
        const string refusedPayload = """{"text": "a\u0000b"}""";
        var fresh = Enumerable.Range(0, 200).Select(_ => Guid.CreateVersion7()).ToList();
        var refused = fresh[137];
        List<LedgerWrite> round =
        [
            .. fresh.Select(id => new LedgerWrite(Claim(id, id == refused ? refusedPayload : "{}"), null)),
            .. ran.Select((id, i) => new LedgerWrite(null, Completion(id, claimed[i].Attempt))),
        ];

        var outcomes = await ledger.FlushAsync(round, CancellationToken.None);

        Assert.All(outcomes, o => Assert.Null(o.Error));
        Assert.All(outcomes.Take(fresh.Count), o => Assert.Equal((true, 1), (o.Claim.Claimed, o.Claim.Attempt)));
        Assert.All(outcomes.Skip(fresh.Count), o => Assert.True(o.Finalized));
        Assert.Equal(100L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1", ("ids", ran.ToArray())));
        Assert.Equal(200L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'running' AND attempts = 1", ("ids", fresh.ToArray())));
        Assert.Equal(300L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", ran.Concat(fresh).ToArray())));

        // The refused payload is kept, as base64 of its bytes, with PostgreSQL's reason.
        var kept = await StorableAsync("payload", refused);
        Assert.Equal(refusedPayload, Encoding.UTF8.GetString(Convert.FromBase64String(kept.GetProperty("base64").GetString()!)));
        Assert.Contains("22P05", kept.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal("{}", await ScalarAsync<string>("SELECT payload::text FROM fleet.tasks WHERE id = @id", ("id", fresh[136])));
    }

    [Fact]
    public async Task Flush_OneResultPostgresRefusesAmongMany_EndsFailedWithTheResultKept_AndTheRestCommitOnce()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var ids = Enumerable.Range(0, 200).Select(_ => Guid.CreateVersion7()).ToList();
        var claimed = await ClaimEachAsync(ledger, ids);

        // A lone surrogate, escaped: valid JSON text that jsonb refuses. One result among two hundred.
        const string refusedResult = """{"text": "\ud800"}""";
        var refused = ids[61];
        var outcomes = await ledger.FlushAsync(
            [.. ids.Select((id, i) => new LedgerWrite(null, Completion(id, claimed[i].Attempt, id == refused ? refusedResult : "{}")))], CancellationToken.None);

        Assert.All(outcomes, o => Assert.Null(o.Error));
        Assert.All(outcomes, o => Assert.True(o.Finalized));
        Assert.Equal(199L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1 AND result = '{}'", ("ids", ids.ToArray())));
        Assert.Equal(200L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND attempt = 1 AND outcome <> 'running'", ("ids", ids.ToArray())));

        // The task that ran ends failed, says why, and keeps its output as base64.
        var row = await ListAsync("SELECT status, error_type, error_message FROM fleet.tasks WHERE id = @id",
            r => (r.GetString(0), r.GetString(1), r.GetString(2)), ("id", refused));
        Assert.Equal(("failed", "UnstorableResult"), (row[0].Item1, row[0].Item2));
        Assert.Contains("22P02", row[0].Item3, StringComparison.Ordinal);
        Assert.Equal("failed", await ScalarAsync<string>("SELECT outcome FROM fleet.task_attempts WHERE task_id = @id", ("id", refused)));
        var kept = await StorableAsync("result", refused);
        Assert.Equal(refusedResult, Encoding.UTF8.GetString(Convert.FromBase64String(kept.GetProperty("base64").GetString()!)));
    }

    [Fact]
    public async Task Complete_ErrorTextsWithNulLoneSurrogatesOrAMegabyte_AreStoredCleanAndBounded()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var (nul, surrogate, huge) = (Guid.CreateVersion7(), Guid.CreateVersion7(), Guid.CreateVersion7());
        var errors = new Dictionary<Guid, (string Type, string Message)>
        {
            [nul] = ("Bad\0Type", "a\0b"),
            [surrogate] = ("System.Exception", "lone \ud800 and \udc00, a pair \ud83d\ude00 kept"),
            [huge] = ("System.Exception", "start " + new string('x', 1_000_000)),
        };
        foreach (var (id, error) in errors)
        {
            var claim = await ledger.ClaimAsync(Claim(id));
            var now = DateTimeOffset.UtcNow;
            Assert.True(await ledger.CompleteAsync(new TaskCompletion(id, claim.Attempt, "failed", "failed", null, error.Type, error.Message, now, now, 1, null)));
        }

        var stored = (await ListAsync("SELECT id, error_type, error_message FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Id: r.GetGuid(0), Type: r.GetString(1), Message: r.GetString(2)), ("ids", errors.Keys.ToArray()))).ToDictionary(r => r.Id);
        Assert.Equal(("Bad\uFFFDType", "a\uFFFDb"), (stored[nul].Type, stored[nul].Message));
        Assert.Equal("lone \uFFFD and \uFFFD, a pair \ud83d\ude00 kept", stored[surrogate].Message);
        Assert.StartsWith("start xxx", stored[huge].Message, StringComparison.Ordinal);
        Assert.InRange(stored[huge].Message.Length, 7_950, 8_000);
        Assert.EndsWith("[cut: 1000006 characters in all]", stored[huge].Message, StringComparison.Ordinal);
        Assert.Equal(stored[huge].Message, await ScalarAsync<string>("SELECT error_message FROM fleet.task_attempts WHERE task_id = @id", ("id", huge)));
    }

    [Fact]
    public async Task AFailedWrite_NeverGivesItsConnectionBackToThePool()
    {
        // One connection, reused by every write. A statement Npgsql prepares automatically on its fifth run, whose
        // parameters PostgreSQL then refuses, left that connection unusable for the next statement ("Received
        // unexpected backend message DataRow"). Ten refused claims, each followed by a healthy one, cover that run.
        await using var pool = FleetDatabaseExtensions.CreateLedgerDataSource($"{Fleet.PostgresConnectionString};Maximum Pool Size=1");
        await using var ledger = new TaskLedger(pool, WorkerId);
        for (var i = 0; i < 10; i++)
        {
            try
            {
                await ledger.ClaimAsync(Claim(Guid.CreateVersion7(), """{"text": "a\u0000b"}"""));
            }
            catch (PostgresException)
            {
                // Refused: what the write after it finds is the point here.
            }

            Assert.True((await ledger.ClaimAsync(Claim(Guid.CreateVersion7()))).Claimed);
        }
    }

    [Fact]
    public async Task Dispose_DuringADatabaseOutage_EndsWithinSeconds_AndFailsTheWaitingWrites()
    {
        // A database that refuses connections: the claim waits for it (maxOutage is ten minutes), as in an outage.
        var unreachable = new NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString) { Port = FreePort(), Timeout = 2 };
        await using var pool = FleetDatabaseExtensions.CreateLedgerDataSource(unreachable.ConnectionString);
        var ledger = new TaskLedger(pool, WorkerId, maxOutage: TimeSpan.FromMinutes(10));
        var claim = ledger.ClaimAsync(Claim(Guid.CreateVersion7()));
        Assert.True(await EventuallyAsync(() => Task.FromResult(ledger.OutageSince is not null), TimeSpan.FromSeconds(10)), "the claim never met the outage");

        var clock = Stopwatch.StartNew();
        await ledger.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"disposal took {clock.Elapsed.TotalSeconds:0.0} s");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => claim);
    }

    [Fact]
    public async Task GroupCommitterDispose_CancelsAFlushStillRunningAfterItsGrace()
    {
        // A flush that never ends by itself, like a write to a server that stopped answering.
        var committer = new GroupCommitter<int, int>(async (items, cancellationToken) =>
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return items;
        });
        var item = committer.EnqueueAsync(1);

        var clock = Stopwatch.StartNew();
        await committer.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(15));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => item);
    }

    [Fact]
    public async Task SigtermDuringADatabaseOutage_HandsTheHeldMessagesBackAfterTheDrain_InsteadOfWaitingForTheDatabase()
    {
        // A worker process whose database connections all pass through a forwarder this test can cut.
        await Fleet.StopWorkerAsync();
        var database = new NpgsqlConnectionStringBuilder(Fleet.PostgresConnectionString);
        await using var forwarder = new TcpForwarder(database.Host!, database.Port);
        var settings = Fleet.WorkerSettings("outage-stop", cpuConcurrency: 1);
        settings["ConnectionStrings:fleetdb"] = new NpgsqlConnectionStringBuilder(database.ConnectionString) { Port = forwarder.Port }.ConnectionString;
        await using var worker = WorkerProcess.Start(settings);
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.workers WHERE host = 'outage-stop' AND state = 'running'") == 1), "the worker never registered");

        // A worker connects its lanes once it has read which are paused (fleet.queue_pauses): only then may the database go.
        Assert.True(await EventuallyAsync(async () => await QueueConsumerCountAsync(TaskQueues.Io) >= 1), "the worker never consumed its lane");

        // The database goes away; the worker takes twenty tasks and holds them, waiting for it.
        forwarder.Cut();
        await PublishRawManyAsync(Enumerable.Range(0, 20).Select(_ =>
            new RawMessage(TaskQueues.Io, Encoding.UTF8.GetBytes($$$"""{"taskId":"{{{Guid.CreateVersion7()}}}","type":"noop","payload":{}}"""))));
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync(TaskQueues.Io) == 0), "the worker did not take the tasks");
        await Task.Delay(TimeSpan.FromSeconds(1));

        // SIGTERM: the held tasks wait for the database through the drain (Worker:DrainSeconds, 10 here), then their
        // messages go back to the queue; the stop is not held for up to Worker:MaxDatabaseOutageSeconds (600).
        var clock = Stopwatch.StartNew();
        Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(90)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the worker took {clock.Elapsed.TotalSeconds:0.0} s to stop");
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync(TaskQueues.Io) == 20, TimeSpan.FromSeconds(10)),
            $"{await QueueMessageCountAsync(TaskQueues.Io)} of the 20 messages are back in {TaskQueues.Io}");
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io_error"));
    }

    [Fact]
    public async Task LedgerPool_RunsTheClaimOnAGenericPlan_WhereTheHostPoolReplansIt()
    {
        // One connection per pool, so the prepared statements read back are the ones the claims ran on. Eight
        // claims of one row each, as at a CPU lane's pace: Npgsql prepares the statement from its fifth use, and
        // PostgreSQL's default then plans each execution for its values (a custom plan), which cost more than
        // running the claim. The ledger's pool plans it once.
        var oneConnection = $"{Fleet.PostgresConnectionString};Maximum Pool Size=1";
        await using var ledgerPool = FleetDatabaseExtensions.CreateLedgerDataSource(oneConnection);
        await using var hostPool = FleetDatabaseExtensions.CreateDataSource(oneConnection);

        var ledgerPlans = await ClaimEightAndCountPlansAsync(ledgerPool);
        var hostPlans = await ClaimEightAndCountPlansAsync(hostPool);

        Assert.True(ledgerPlans.Generic >= 1, $"generic {ledgerPlans.Generic}");
        Assert.Equal(0L, ledgerPlans.Custom);
        Assert.True(hostPlans.Custom >= 1, $"custom {hostPlans.Custom}");
    }

    private static async Task<(long Generic, long Custom)> ClaimEightAndCountPlansAsync(NpgsqlDataSource pool)
    {
        await using (var ledger = new TaskLedger(pool, WorkerId))
        {
            for (var i = 0; i < 8; i++)
            {
                Assert.True((await ledger.ClaimAsync(Claim(Guid.CreateVersion7()))).Claimed);
            }
        }

        await using var command = pool.CreateCommand(
            "SELECT coalesce(sum(generic_plans), 0)::bigint, coalesce(sum(custom_plans), 0)::bigint FROM pg_prepared_statements WHERE statement LIKE '%INSERT INTO fleet.task_attempts%'");
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>Claims the tasks one write at a time, as their runs would; returns the claims in order.</summary>
    private static async Task<List<ClaimResult>> ClaimEachAsync(TaskLedger ledger, IEnumerable<Guid> ids)
    {
        var claimed = new List<ClaimResult>();
        foreach (var id in ids)
        {
            claimed.Add(await ledger.ClaimAsync(Claim(id)));
        }

        return claimed;
    }

    /// <summary>The <c>published_at</c> stamp a publisher writes after the confirm, for a message built at <paramref name="attempts"/>.</summary>
    private async Task StampAsync(Guid id, int attempts)
    {
        await using var stamp = Fleet.DataSource.CreateCommand(global::Fleet.Client.SubmissionSql.MarkPublished);
        stamp.Parameters.AddWithValue("id", new[] { id });
        stamp.Parameters.AddWithValue("attempts", new[] { attempts });
        await stamp.ExecuteNonQueryAsync();
    }

    private static TaskClaim Claim(Guid id, string payload = "{}")
    {
        var now = DateTimeOffset.UtcNow;
        return new TaskClaim(id, "noop", "fleet-io", payload, 0, null, now, 3, null, now, Redelivered: false);
    }

    private static TaskCompletion Completion(Guid id, int attempt, string result = "{}")
    {
        var now = DateTimeOffset.UtcNow;
        return new TaskCompletion(id, attempt, "succeeded", "succeeded", result, null, null, now, now, 1, null);
    }

    /// <summary>The storable form kept in a task's <paramref name="column"/> (payload or result): its inner object.</summary>
    private async Task<JsonElement> StorableAsync(string column, Guid id)
    {
        var text = await ScalarAsync<string>($"SELECT {column}::text FROM fleet.tasks WHERE id = @id", ("id", id));
        using var json = JsonDocument.Parse(text);
        Assert.True(json.RootElement.TryGetProperty("fleet_unstorable", out var kept), $"{column} is not in storable form: {text}");
        return kept.Clone();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Forwards TCP connections to one server until <see cref="Cut"/>: then it refuses new ones and drops the open ones.</summary>
    private sealed class TcpForwarder : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly ConcurrentQueue<TcpClient> _open = new();
        private readonly CancellationTokenSource _cut = new();
        private readonly Task _accepting;

        public TcpForwarder(string host, int port)
        {
            _listener.Start();
            _accepting = AcceptAsync(host, port);
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public void Cut()
        {
            _cut.Cancel();
            _listener.Stop();
            while (_open.TryDequeue(out var client))
            {
                client.Dispose();
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_cut.IsCancellationRequested)
            {
                Cut();
            }

            await _accepting;
            _cut.Dispose();
        }

        private async Task AcceptAsync(string host, int port)
        {
            while (!_cut.IsCancellationRequested)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_cut.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                var server = new TcpClient();
                await server.ConnectAsync(host, port);
                _open.Enqueue(client);
                _open.Enqueue(server);
                _ = PumpAsync(client, server);
                _ = PumpAsync(server, client);
            }
        }

        private async Task PumpAsync(TcpClient from, TcpClient to)
        {
            try
            {
                await from.GetStream().CopyToAsync(to.GetStream(), _cut.Token);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // Cut, or the other side closed: the connection ends either way.
            }
            finally
            {
                from.Dispose();
                to.Dispose();
            }
        }
    }
}
