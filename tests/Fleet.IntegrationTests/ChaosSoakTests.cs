using System.Diagnostics;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// <c>make chaos</c>: a longer randomized soak, excluded from <c>make test</c>. Three worker processes run a mixed
/// workload (FLEET_CHAOS_TASKS, default 20,000) while workers are killed (-9) or stopped (SIGTERM) and replaced,
/// and RabbitMQ and PostgreSQL are restarted; at the end the SQL invariants must hold.
/// </summary>
[Trait("Category", "Chaos")]
public sealed class ChaosSoakTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await Fleet.StopWorkerAsync();
    }

    [Fact]
    public async Task RandomKillsAndRestarts_LoseNothingAndAddNothing()
    {
        var total = int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_TASKS"), out var n) ? n : 20_000;
        var random = new Random(int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_SEED"), out var seed) ? seed : Environment.TickCount);
        var workers = new List<WorkerProcess>();
        var generation = 0;
        WorkerProcess StartWorker() => WorkerProcess.Start(Fleet.WorkerSettings($"chaos-{++generation}", cpuConcurrency: 1));
        for (var i = 0; i < 3; i++)
        {
            workers.Add(StartWorker());
        }

        // Tasks arrive over FLEET_CHAOS_SECONDS (default 180) in chunks, so the faults hit a fleet that is busy
        // the whole time. A chunk that fails (broker or database restarting) is submitted again with the same ids:
        // resubmitting is idempotent.
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("FLEET_CHAOS_SECONDS"), out var s) ? s : 180;
        var requests = Enumerable.Range(0, total).Select(i => (i % 20) switch
        {
            < 15 => TaskRequest.Create("noop", new { }),
            < 19 => TaskRequest.Create("sleep", new { ms = 20 }),
            _ => TaskRequest.Create("sha256", new { size_kb = 256, rounds = 4, seed = i }),
        } with { TaskId = Guid.CreateVersion7() }).ToList();
        var ids = requests.Select(r => r.TaskId!.Value).ToList();
        var chunks = requests.Chunk(500).ToList();
        var submitted = 0;
        var resubmits = 0;
        var submitter = Task.Run(async () =>
        {
            foreach (var chunk in chunks)
            {
                while (true)
                {
                    try
                    {
                        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                        await Fleet.Client.SubmitManyAsync(chunk, timeout.Token);
                        break;
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        Interlocked.Increment(ref resubmits);
                        await Task.Delay(1000);
                    }
                }

                Interlocked.Add(ref submitted, chunk.Length);
                await Task.Delay(TimeSpan.FromSeconds((double)seconds / chunks.Count));
            }
        });

        var clock = Stopwatch.StartNew();
        var actions = new List<string>();
        var brokerRestarts = 0;
        var databaseRestarts = 0;
        try
        {
            while (clock.Elapsed < TimeSpan.FromMinutes(15) && (!submitter.IsCompleted || await FinalCountAsync(ids) < ids.Count))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(random.Next(2_000, 6_000)));
                var victim = random.Next(workers.Count);
                switch (random.Next(10))
                {
                    case < 4:
                        await workers[victim].KillAsync();
                        await workers[victim].DisposeAsync();
                        workers[victim] = StartWorker();
                        actions.Add("kill -9 worker");
                        break;
                    case < 7:
                        await workers[victim].TerminateAsync(TimeSpan.FromSeconds(60));
                        await workers[victim].DisposeAsync();
                        workers[victim] = StartWorker();
                        actions.Add("SIGTERM worker");
                        break;
                    case < 8 when brokerRestarts < 3:
                        brokerRestarts++;
                        await Fleet.Servers.RestartRabbitMqAsync();
                        actions.Add("restart RabbitMQ");
                        break;
                    case < 9 when databaseRestarts < 3:
                        databaseRestarts++;
                        await Fleet.Servers.StopPostgresAsync();
                        await Task.Delay(TimeSpan.FromSeconds(random.Next(1, 5)));
                        await Fleet.Servers.StartPostgresAsync();
                        await Fleet.ReconnectAfterDatabaseRestartAsync();
                        actions.Add("restart PostgreSQL");
                        break;
                    default:
                        actions.Add("pause");
                        break;
                }

                output.WriteLine($"{clock.Elapsed:mm\\:ss} {actions[^1]}; {Volatile.Read(ref submitted)} submitted, {await FinalCountAsync(ids)} final");
            }

            await submitter;
            await WaitForFinalAsync(ids, TimeSpan.FromMinutes(5));
        }
        finally
        {
            foreach (var worker in workers)
            {
                await worker.DisposeAsync();
            }
        }

        var report = await DeliveryReport.ReadAsync(Fleet.DataSource, ids);
        var summary = $"chaos: {report}; {clock.Elapsed.TotalSeconds:0} s, {resubmits} chunk resubmits, faults: {string.Join(", ", actions.GroupBy(a => a).Select(g => $"{g.Count()} x {g.Key}"))}";
        output.WriteLine(summary);
        Console.WriteLine(summary);
        Assert.Equal((0L, 0L), (report.Lost, report.Unexpected));
    }

    private async Task<long> FinalCountAsync(IReadOnlyCollection<Guid> ids)
    {
        try
        {
            return await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status IN ('succeeded','failed','timed_out','cancelled')", ("ids", ids.ToArray()));
        }
        catch (Npgsql.NpgsqlException)
        {
            // Asked while the database restarts.
            return -1;
        }
    }
}
