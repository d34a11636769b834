using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary><c>fleet requeue</c>, the built command against the test database and broker: what it creates, prints and refuses.</summary>
public sealed class RequeueCliTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task Requeue_ById_AndByFilter_CreatesNewTasksFromTheFinalOnes_AndRefusesBadInput()
    {
        var seeded = await ListAsync("""
            INSERT INTO fleet.tasks (id, type, queue, status, payload, attempts, max_attempts, priority, submitted_at, finished_at, error_type)
            SELECT gen_random_uuid(), 'noop', 'fleet-io', 'failed', '{}', 1, 3, 0, now(), now() - s.n * interval '1 second', 'Boom'
            FROM generate_series(2, 1, -1) AS s(n)
            RETURNING id
            """, r => r.GetGuid(0));

        var one = await FleetAsync("requeue", seeded[0].ToString());
        Assert.True(one.ExitCode == 0, one.Output);
        Assert.True(Guid.TryParse(one.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1], out var id), one.Output);
        Assert.Equal(seeded[0], await ScalarAsync<Guid>("SELECT requeued_from FROM fleet.tasks WHERE id = @id", ("id", id)));

        // The first one was requeued already: the filter takes only the second.
        var many = await FleetAsync("requeue", "--status", "failed,timed_out", "--type", "noop", "--since", "1h");
        Assert.True(many.ExitCode == 0, many.Output);
        Assert.Contains("requeued 1 tasks", many.Output, StringComparison.Ordinal);
        Assert.Contains($" from {seeded[1]}", many.Output, StringComparison.Ordinal);
        await WaitForFinalAsync(await ListAsync("SELECT id FROM fleet.tasks WHERE requeued_from IS NOT NULL", r => r.GetGuid(0)));

        Assert.Equal(1, (await FleetAsync("requeue", Guid.NewGuid().ToString())).ExitCode);
        foreach (var (arguments, says) in new[]
        {
            (new[] { "requeue" }, "--status"),
            (new[] { "requeue", "--status", "queued" }, "final"),
            (new[] { "requeue", "--status", "failed", "--since", "yesterday" }, "--since"),
            (new[] { "requeue", seeded[0].ToString(), "--status", "failed" }, "not both"),
        })
        {
            var refused = await FleetAsync(arguments);
            Assert.True(refused.ExitCode == 2, $"{string.Join(' ', arguments)}: {refused.ExitCode} {refused.Output}");
            Assert.Contains(says, refused.Output, StringComparison.Ordinal);
        }

        Assert.Equal(4L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks"));
    }

    /// <summary>
    /// The command submits through the broker too, so it gets both connection strings, and runs from the CLI's own build
    /// output: the copy beside this assembly lacks System.Threading.RateLimiting, which the broker client loads to publish.
    /// </summary>
    private Task<ProcessTools.CommandResult> FleetAsync(params string[] arguments) =>
        ProcessTools.RunAsync(
            "dotnet",
            [Repository.PathTo("src", "Fleet.Cli", "bin", new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "fleet.dll"), .. arguments],
            TimeSpan.FromMinutes(2),
            new Dictionary<string, string>
            {
                ["ConnectionStrings__fleetdb"] = Fleet.PostgresConnectionString,
                ["ConnectionStrings__rabbitmq"] = Fleet.AmqpUri,
            });
}
