using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>fleet limit</c>, <c>fleet submit --priority --tenant</c> and <c>fleet status</c>, the built command against the
/// test database: what they store and show, and each subcommand's exit code.
/// </summary>
public sealed class LimitCliTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task LimitCommands_SetListRemove_StoreWhatTheApiServes_AndRefuseBadNumbers()
    {
        var created = await FleetCliAsync("limit", "set", "type", "http-get", "--per-second", "50", "--burst", "100");
        Assert.True(created.ExitCode == 0, created.Output);
        Assert.Contains("created", created.Output, StringComparison.Ordinal);
        var replaced = await FleetCliAsync("limit", "set", "type", "http-get", "--per-second", "0.5", "--max-running", "20");
        Assert.True(replaced.ExitCode == 0, replaced.Output);
        Assert.Contains("replaced", replaced.Output, StringComparison.Ordinal);
        Assert.True((await FleetCliAsync("limit", "set", "tenant", "acme", "--max-running", "20")).ExitCode == 0);
        Assert.Equal((0.5, true, 20), Assert.Single(await ListAsync(
            "SELECT per_second, burst IS NULL, max_running FROM fleet.limits WHERE scope = 'type' AND key = 'http-get'",
            r => (r.GetDouble(0), r.GetBoolean(1), r.GetInt32(2)))));

        foreach (var (arguments, says) in new[]
        {
            (new[] { "limit", "set", "type", "noop" }, "--per-second"),
            (new[] { "limit", "set", "type", "noop", "--per-second", "0" }, "--per-second"),
            (new[] { "limit", "set", "type", "noop", "--max-running", "1000001" }, "--max-running"),
            (new[] { "limit", "set", "type", "noop", "--max-running", "2", "--burst", "5" }, "--burst"),
            (new[] { "limit", "set", "queue", "fleet-io", "--max-running", "2" }, "scope"),
        })
        {
            var refused = await FleetCliAsync(arguments);
            Assert.True(refused.ExitCode == 2, $"{string.Join(' ', arguments)}: {refused.ExitCode} {refused.Output}");
            Assert.Contains(says, refused.Output, StringComparison.Ordinal);
        }

        // The dispatcher's blocked state shows in the list.
        Assert.Equal(1L, await ScalarAsync<long>(
            "WITH u AS (UPDATE fleet.limits SET blocked_reason = 'rate-limit', blocked_since = now() WHERE key = 'http-get' RETURNING 1) SELECT count(*) FROM u"));
        var list = await FleetCliAsync("limit", "list");
        Assert.True(list.ExitCode == 0, list.Output);
        var lines = list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains(lines, l => l.StartsWith("type", StringComparison.Ordinal) && l.Contains("http-get", StringComparison.Ordinal)
            && l.Contains("0.5", StringComparison.Ordinal) && l.Contains("rate-limit", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tenant", StringComparison.Ordinal) && l.Contains("acme", StringComparison.Ordinal));

        await using (var api = await ApiHost.StartAsync(Fleet))
        {
            using var http = api.CreateClient();
            var served = System.Text.Json.Nodes.JsonNode.Parse(await http.GetStringAsync("limits/type/http-get"))!;
            Assert.Equal((0.5, 20, "rate-limit"), ((double)served["perSecond"]!, (int)served["maxRunning"]!, (string?)served["blockedReason"]));
        }

        Assert.True((await FleetCliAsync("limit", "remove", "tenant", "acme")).ExitCode == 0);
        Assert.Equal(1, (await FleetCliAsync("limit", "remove", "tenant", "acme")).ExitCode);
        Assert.Equal(["http-get"], await ListAsync("SELECT key FROM fleet.limits", r => r.GetString(0)));
    }

    [Fact]
    public async Task ATaskWithPriorityAndTenant_IsStoredForTheDispatcher_StatusSaysWhyItWaits_AndSubmitRefusesBadValues()
    {
        // Delayed an hour, so that it waits whatever else runs; the reason is the view's. (Submitted through the
        // client: the command would need the broker's settings too, and it checks its options before using them.)
        var id = await Fleet.Client.SubmitAsync(new Fleet.Client.TaskRequest("noop", System.Text.Json.JsonDocument.Parse("{}").RootElement)
        {
            Priority = 7, Tenant = "acme", DelaySeconds = 3600,
        });
        Assert.Equal((7, "acme", true), Assert.Single(await ListAsync(
            "SELECT priority, tenant, dispatched FROM fleet.tasks WHERE id = @id", r => (r.GetInt32(0), r.GetString(1), r.GetBoolean(2)), ("id", id))));

        var one = await FleetCliAsync("status", id.ToString());
        Assert.True(one.ExitCode == 0, one.Output);
        Assert.Contains("priority:      7", one.Output, StringComparison.Ordinal);
        Assert.Contains("tenant:        acme", one.Output, StringComparison.Ordinal);
        Assert.Contains("waiting_for:   delay", one.Output, StringComparison.Ordinal);

        var counts = await FleetCliAsync("status");
        Assert.True(counts.ExitCode == 0, counts.Output);
        Assert.Matches(@"delay:\s+1\b", counts.Output);
        Assert.Matches(@"rate-limit:\s+0\b", counts.Output);
        Assert.Matches(@"total:\s+1\b", counts.Output);

        foreach (var (arguments, says) in new[]
        {
            (new[] { "submit", "noop", "--priority", "10" }, "--priority"),
            (new[] { "submit", "noop", "--priority", "-1" }, "--priority"),
            (new[] { "submit", "noop", "--tenant", " " }, "--tenant"),
        })
        {
            var refused = await FleetCliAsync(arguments);
            Assert.True(refused.ExitCode == 2, $"{string.Join(' ', arguments)}: {refused.ExitCode} {refused.Output}");
            Assert.Contains(says, refused.Output, StringComparison.Ordinal);
        }

        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }
}
