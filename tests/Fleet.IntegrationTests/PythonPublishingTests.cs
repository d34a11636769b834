using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// docs/publishing.md's Python example, samples/python/publish.py, run as a user would run it: Debian's
/// /usr/bin/python3 with python3-pika (infra/local/install.sh installs it), against this run's RabbitMQ. Its tasks
/// must end succeeded in PostgreSQL. A missing pika fails the test: it is part of the setup, not optional.
/// </summary>
public sealed class PythonPublishingTests(FleetFixture fleet) : FleetTest(fleet)
{
    private const string Python = "/usr/bin/python3";

    [Fact]
    public async Task PythonSample_PublishesPlainJsonWithPika_AndItsTasksSucceed()
    {
        var pika = await ProcessTools.RunAsync(Python, ["-c", "import pika; print(pika.__version__)"], TimeSpan.FromSeconds(30));
        Assert.True(pika.ExitCode == 0,
            $"{Python} cannot import pika ({pika.Output}). Install Debian's python3-pika: infra/local/install.sh (as root) or apt-get install python3-pika.");

        var sha = await PublishAsync(new() { ["FLEET_AMQP_URL"] = Fleet.Servers.RabbitMqUri.AbsoluteUri }, "--type", "sha256", "--count", "6");
        var noop = await PublishAsync(new()
        {
            ["FLEET_AMQP_URL"] = Fleet.Servers.RabbitMqUri.AbsoluteUri,
            ["FLEET_PUBLISH_TYPE"] = "sleep",
            ["FLEET_PUBLISH_COUNT"] = "3",
            ["FLEET_PUBLISH_PAYLOAD"] = """{"ms": 20}""",
        });
        Assert.Equal((6, 3), (sha.Count, noop.Count));
        await WaitForFinalAsync([.. sha, .. noop]);

        var rows = await ListAsync(
            "SELECT id, type, queue, status, batch_id, attempts, result->>'digest' FROM fleet.tasks WHERE id = ANY(@ids)",
            r => (Id: r.GetGuid(0), Type: r.GetString(1), Queue: r.GetString(2), Status: r.GetString(3), Batch: r.IsDBNull(4) ? (Guid?)null : r.GetGuid(4),
                  Attempts: r.GetInt32(5), Digest: r.IsDBNull(6) ? null : r.GetString(6)),
            ("ids", sha.Concat(noop).ToArray()));

        Assert.Equal(9, rows.Count);
        Assert.All(rows, r => Assert.Equal(("succeeded", 1), (r.Status, r.Attempts)));
        var shaRows = rows.Where(r => sha.Contains(r.Id)).ToList();
        Assert.All(shaRows, r => Assert.Equal(("sha256", "fleet-cpu"), (r.Type, r.Queue)));
        Assert.All(shaRows, r => Assert.Matches("^[0-9a-f]{64}$", r.Digest!));
        Assert.Single(shaRows.Select(r => r.Batch).Distinct());
        Assert.NotNull(shaRows[0].Batch);
        Assert.All(rows.Where(r => noop.Contains(r.Id)), r => Assert.Equal(("sleep", "fleet-io"), (r.Type, r.Queue)));

        // Task i of the standard sha256 workload gets seed i, as `fleet submit --workload sha256` sends it.
        var seeds = await ListAsync("SELECT (payload->>'seed')::int FROM fleet.tasks WHERE id = ANY(@ids)", r => r.GetInt32(0), ("ids", sha.ToArray()));
        Assert.Equal([0, 1, 2, 3, 4, 5], seeds.Order());
    }

    private static async Task<List<Guid>> PublishAsync(Dictionary<string, string> environment, params string[] arguments)
    {
        var run = await ProcessTools.RunAsync(Python, [Repository.PathTo("samples", "python", "publish.py"), .. arguments], TimeSpan.FromMinutes(1), environment);
        Assert.True(run.ExitCode == 0, $"publish.py exited with {run.ExitCode}: {run.Output}");
        Assert.Contains("published ", run.Output, StringComparison.Ordinal);
        return [.. run.Output.Split('\n').Select(line => Guid.TryParse(line.Trim(), out var id) ? id : Guid.Empty).Where(id => id != Guid.Empty)];
    }
}
