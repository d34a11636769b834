using System.Text;
using System.Text.Json;
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
    public async Task Flush_OneClaimPostgresRefusesAmongMany_IsStoredAsBase64_AndTheRestCommitOnce()
    {
        await using var ledger = new TaskLedger(Fleet.DataSource, WorkerId);
        var ran = Enumerable.Range(0, 100).Select(_ => Guid.CreateVersion7()).ToList();
        var claimed = new List<ClaimResult>();
        foreach (var id in ran)
        {
            claimed.Add(await ledger.ClaimAsync(Claim(id)));
        }

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
        var claimed = new List<ClaimResult>();
        foreach (var id in ids)
        {
            claimed.Add(await ledger.ClaimAsync(Claim(id)));
        }

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
}
