using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.IntegrationTests;

/// <summary>
/// The hot-path statements (the worker's claim and completion, the producer's <c>published_at</c> stamp) must find
/// their rows by primary key whatever the statistics say. Written with plain status tests, PostgreSQL planned them
/// (statistics taken while every task was final, a 500-row batch) as a read of every open task through
/// <c>ix_tasks_status_submitted</c> or <c>ix_tasks_unpublished</c>: free without a backlog, the whole backlog per
/// batch with one, so a lagging fleet fell to a quarter of its speed. Here the statements are explained, with their
/// real parameters, in exactly that state.
/// </summary>
public sealed class HotPathPlanTests(FleetFixture fleet) : FleetTest(fleet)
{
    private const int BatchSize = 500;

    [Fact]
    public async Task ClaimCompleteAndStamp_UseThePrimaryKey_WhenStatisticsSayNothingIsOpen()
    {
        // 200,000 final tasks (enough that PostgreSQL prefers index probes to a scan) and fresh statistics: to the
        // planner, open tasks look (nearly) nonexistent. The fixture empties the tables before the next test.
        await ScalarAsync<int>("""
            WITH done AS (
                INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, priority, submitted_at, published_at,
                                         started_at, finished_at, worker_id)
                SELECT gen_random_uuid(), 'noop', 'fleet-io', 'succeeded', '{}', 1, 0, now(), now(), now(), now(), 'plan-test'
                FROM generate_series(1, 200000)
                RETURNING 1)
            SELECT count(*)::int FROM done
            """);
        await using (var analyze = Fleet.DataSource.CreateCommand("ANALYZE fleet.tasks"))
        {
            await analyze.ExecuteNonQueryAsync();
        }

        await using var statements = HotStatements.Create(Fleet.DataSource);
        var (claim, complete, stamp) = (statements.Claim, statements.Complete, statements.Stamp);

        // As they run on the host pool: unnamed statements, planned with their values.
        AssertPrimaryKeyOnly(await ExplainAsync(Fleet.DataSource, claim), "claim");
        AssertPrimaryKeyOnly(await ExplainAsync(Fleet.DataSource, complete), "completion");
        AssertPrimaryKeyOnly(await ExplainAsync(Fleet.DataSource, stamp), "published_at stamp");

        // The worker's ledger pool and the client's pool plan these statements once, for no values in particular
        // (plan_cache_mode=force_generic_plan): that one plan must read by primary key too.
        await using var ledgerPool = FleetDatabaseExtensions.CreateLedgerDataSource(Fleet.PostgresConnectionString);
        await using var clientPool = FleetClient.CreateDataSource(Fleet.PostgresConnectionString);
        AssertPrimaryKeyOnly(await ExplainGenericAsync(ledgerPool, claim), "claim (generic plan)");
        AssertPrimaryKeyOnly(await ExplainGenericAsync(ledgerPool, complete), "completion (generic plan)");
        var genericStamp = await ExplainGenericAsync(clientPool, stamp);
        AssertPrimaryKeyOnly(genericStamp, "published_at stamp (generic plan)");
        Assert.True(genericStamp.Contains("ANY ($1)", StringComparison.Ordinal), $"not the generic plan:\n{genericStamp}");
    }

    /// <summary>
    /// The ledger's and the client's generic plans are made once per connection from the statistics of that moment. On
    /// tables that were just truncated (a new deployment, a restore, a benchmark's fresh side) and not analysed yet,
    /// PostgreSQL's choice was a plan that reads the whole table per batch (the client's stamp: a hash semi-join over
    /// two sequential scans), kept until autovacuum's next analyse while the table grew; both pools price such plans
    /// out. A pool with the planner's defaults is the control.
    /// </summary>
    [Fact]
    public async Task TheLedgersAndTheClientsGenericPlans_UsePrimaryKeys_OnTablesWithoutStatistics()
    {
        await using (var truncate = Fleet.DataSource.CreateCommand("TRUNCATE fleet.task_attempts, fleet.tasks"))
        {
            await truncate.ExecuteNonQueryAsync();
        }

        await using var statements = HotStatements.Create(Fleet.DataSource);
        var (claim, complete) = (statements.Claim, statements.Complete);

        await using var ledgerPool = FleetDatabaseExtensions.CreateLedgerDataSource(Fleet.PostgresConnectionString);
        await using var clientPool = FleetClient.CreateDataSource(Fleet.PostgresConnectionString);
        foreach (var (name, pool, statement) in new[] { ("claim", ledgerPool, claim), ("completion", ledgerPool, complete), ("client's published_at stamp", clientPool, statements.Stamp) })
        {
            var plan = await ExplainGenericAsync(pool, statement);
            AssertPrimaryKeyOnly(plan, $"{name} (generic plan, no statistics)");
            foreach (var whole in new[] { "Seq Scan", "Hash Join", "Merge Join", "Materialize" })
            {
                Assert.False(plan.Contains(whole, StringComparison.Ordinal), $"the {name}'s plan without statistics has a {whole}:\n{plan}");
            }
        }

        // The same completion planned with the defaults (an explicit enable_seqscan keeps the pool from adding its own).
        await using var defaults = FleetDatabaseExtensions.CreateLedgerDataSource($"{Fleet.PostgresConnectionString};Options=-c enable_seqscan=on");
        var control = await ExplainGenericAsync(defaults, complete);
        Assert.True(new[] { "Seq Scan", "Hash Join", "Materialize" }.Any(w => control.Contains(w, StringComparison.Ordinal)),
            $"the control no longer plans a whole-table read on a table without statistics; the test shows nothing:\n{control}");
    }

    /// <summary>
    /// The hot path's statements for one batch of <see cref="BatchSize"/> new tasks: the ledger's claim and completion
    /// (as a worker's flush sends them) and the submitter's <c>published_at</c> stamp.
    /// </summary>
    private sealed class HotStatements(TaskLedger ledger, NpgsqlBatch round, NpgsqlBatchCommand stamp) : IAsyncDisposable
    {
        public NpgsqlBatchCommand Claim => round.BatchCommands[0];

        public NpgsqlBatchCommand Complete => round.BatchCommands[1];

        public NpgsqlBatchCommand Stamp => stamp;

        public static HotStatements Create(NpgsqlDataSource dataSource)
        {
            var ids = Enumerable.Range(0, BatchSize).Select(_ => Guid.CreateVersion7()).ToArray();
            var batchRound = Enumerable.Range(0, BatchSize).ToList();
            var now = DateTimeOffset.UtcNow;
            var ledger = new TaskLedger(dataSource, "plan-test:1:000000");
            var claims = ids.Select(id => new TaskClaim(id, "noop", "fleet-io", "{}", 0, null, now, 3, null, now, false)).ToList();
            var completions = ids.Select(id => new TaskCompletion(id, 1, "succeeded", "succeeded", "{}", null, null, now, now, 0.1, 0.1)).ToList();
            var round = ledger.CreateRoundBatch(claims, batchRound, completions, batchRound, repeat: false);
            var stamp = new NpgsqlBatchCommand(SubmissionSql.MarkPublished);
            stamp.Parameters.Add(new NpgsqlParameter("id", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = ids });
            stamp.Parameters.Add(new NpgsqlParameter("attempts", NpgsqlDbType.Array | NpgsqlDbType.Integer) { Value = new int[ids.Length] });
            return new HotStatements(ledger, round, stamp);
        }

        public async ValueTask DisposeAsync()
        {
            await round.DisposeAsync();
            await ledger.DisposeAsync();
        }
    }

    /// <summary>
    /// EXPLAIN of the plan a pool with <c>plan_cache_mode=force_generic_plan</c> runs: the statement prepared on one
    /// of its connections, then explained through EXECUTE (a plain EXPLAIN would plan with the parameter values).
    /// The values passed are nulls; a generic plan does not look at them.
    /// </summary>
    private static async Task<string> ExplainGenericAsync(NpgsqlDataSource pool, NpgsqlBatchCommand statement)
    {
        await using var connection = await pool.OpenConnectionAsync();
        await using var prepared = Copy(statement, statement.CommandText, connection);
        await prepared.PrepareAsync();
        await using var find = new NpgsqlCommand(
            "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements ORDER BY prepare_time DESC LIMIT 1", connection);
        string name;
        int count;
        await using (var reader = await find.ExecuteReaderAsync())
        {
            Assert.True(await reader.ReadAsync());
            (name, count) = (reader.GetString(0), reader.GetInt32(1));
        }

        await using var explain = new NpgsqlCommand($"EXPLAIN (COSTS OFF) EXECUTE {name}({string.Join(", ", Enumerable.Repeat("NULL", count))})", connection);
        var plan = await ReadPlanAsync(explain);
        await prepared.UnprepareAsync();
        return plan;
    }

    /// <summary>EXPLAIN of the statement as it would run: an unnamed statement, planned with its parameter values.</summary>
    private static async Task<string> ExplainAsync(NpgsqlDataSource pool, NpgsqlBatchCommand statement)
    {
        await using var connection = await pool.OpenConnectionAsync();
        await using var explain = Copy(statement, "EXPLAIN (COSTS OFF) " + statement.CommandText, connection);
        return await ReadPlanAsync(explain);
    }

    /// <summary>A command on <paramref name="connection"/> with <paramref name="text"/> and copies of the statement's parameters.</summary>
    private static NpgsqlCommand Copy(NpgsqlBatchCommand statement, string text, NpgsqlConnection connection)
    {
        var command = new NpgsqlCommand(text, connection);
        foreach (NpgsqlParameter parameter in statement.Parameters)
        {
            command.Parameters.Add(parameter.Clone());
        }

        return command;
    }

    private static async Task<string> ReadPlanAsync(NpgsqlCommand command)
    {
        var lines = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            lines.Add(reader.GetString(0));
        }

        return string.Join('\n', lines);
    }

    private static void AssertPrimaryKeyOnly(string plan, string statement)
    {
        Assert.True(plan.Contains("pk_tasks", StringComparison.Ordinal), $"the {statement} does not read fleet.tasks by primary key:\n{plan}");
        foreach (var index in new[] { "ix_tasks_status_submitted", "ix_tasks_unpublished", "Seq Scan on tasks" })
        {
            Assert.False(plan.Contains(index, StringComparison.Ordinal), $"the {statement} reads {index}:\n{plan}");
        }
    }
}
