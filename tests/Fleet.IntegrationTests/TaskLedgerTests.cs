using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Npgsql;

namespace Fleet.IntegrationTests;

/// <summary>
/// The worker's ledger writes the claims and the completions of one batch in one transaction (one commit where
/// there were two), and a claim that PostgreSQL refuses must not take the completions batched with it down too:
/// those tasks already ran, and a lost result would run them again.
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
    public async Task Flush_AClaimPostgresRefuses_FailsOnlyTheClaims()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var (ran, refused, valid) = (Guid.CreateVersion7(), Guid.CreateVersion7(), Guid.CreateVersion7());
        var first = await ledger.ClaimAsync(Claim(ran));

        // Valid JSON that jsonb refuses (a NUL character): the claim statement fails as a whole.
        var outcomes = await ledger.FlushAsync(
            [
                new LedgerWrite(Claim(refused, """{"text": "a\u0000b"}"""), null),
                new LedgerWrite(Claim(valid), null),
                new LedgerWrite(null, Completion(ran, first.Attempt)),
            ],
            CancellationToken.None);

        Assert.IsType<PostgresException>(outcomes[0].Error);
        Assert.IsType<PostgresException>(outcomes[1].Error);
        Assert.Null(outcomes[2].Error);
        Assert.True(outcomes[2].Finalized);
        Assert.Equal("succeeded", await ScalarAsync<string>("SELECT status FROM fleet.tasks WHERE id = @id", ("id", ran)));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids)", ("ids", new[] { refused, valid })));

        // Through the public calls the refused claim throws, and the valid one goes through in a batch of its own.
        await Assert.ThrowsAsync<PostgresException>(() => ledger.ClaimAsync(Claim(refused, """{"text": "a\u0000b"}""")));
        Assert.True((await ledger.ClaimAsync(Claim(valid))).Claimed);
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

    private static TaskClaim Claim(Guid id, string payload = "{}")
    {
        var now = DateTimeOffset.UtcNow;
        return new TaskClaim(id, "noop", "fleet-io", payload, 0, null, now, 3, null, now, Redelivered: false);
    }

    private static TaskCompletion Completion(Guid id, int attempt)
    {
        var now = DateTimeOffset.UtcNow;
        return new TaskCompletion(id, attempt, "succeeded", "succeeded", "{}", null, null, now, now, 1, null);
    }
}
