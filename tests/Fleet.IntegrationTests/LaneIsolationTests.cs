using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>CPU-lane work runs on its own threads, so a saturated CPU lane does not starve I/O-lane tasks.</summary>
public sealed class LaneIsolationTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task SleepTasks_CompleteNearTheirDuration_WhileTheCpuLaneIsSaturated()
    {
        var heatBatch = Guid.NewGuid();
        // Enough CPU work to outlast the 40 sleeps by far (about 15 s of lane time on two threads): the pipelined
        // client submits so fast now that 120 heat tasks could finish before the last sleep did.
        var heat = await Fleet.Client.SubmitManyAsync(StandardRequests.Of("heat", 1000, heatBatch));

        // The CPU lane is full once it runs as many heat tasks as it has threads (one per core in the fixture).
        Assert.True(
            await EventuallyAsync(async () => await ScalarAsync<long>(
                "SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status = 'running'", ("b", heatBatch)) >= Environment.ProcessorCount),
            "the heat tasks never filled the CPU lane");

        var sleeps = new List<Guid>();
        for (var i = 0; i < 40; i++)
        {
            sleeps.Add(await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = 50 })));
            await Task.Delay(25);
        }

        await WaitForFinalAsync(sleeps);
        var heatStillRunning = await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE batch_id = @b AND status NOT IN ('succeeded','failed')", ("b", heatBatch));
        var latencies = await ListAsync(
            "SELECT extract(epoch FROM finished_at - submitted_at)::float8 * 1000 FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' ORDER BY 1",
            r => r.GetDouble(0), ("ids", sleeps.ToArray()));
        await WaitForFinalAsync(heat, TimeSpan.FromMinutes(5));

        // The CPU lane must still have had work when the last sleep finished, or the test measured nothing.
        Assert.True(heatStillRunning > 0, "the heat tasks finished before the sleeps; the CPU lane was not saturated during the measurement");
        Assert.Equal(40, latencies.Count);
        var p95 = latencies[(int)Math.Ceiling(0.95 * latencies.Count) - 1];
        Assert.True(p95 < 1000, $"sleep(50 ms) latency p95 was {p95:0} ms while the CPU lane was busy (bound 1000 ms)");
    }
}
