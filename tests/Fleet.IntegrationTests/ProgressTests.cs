using System.Net;
using System.Text.Json.Nodes;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// A handler's progress (<c>TaskContext.ReportProgress</c>) reaches <c>GET /tasks/{id}</c> while the task runs, from a
/// real worker process: <c>heat</c> on a CPU-lane thread, and in a process-lane child, whose reports travel back over
/// the child protocol. Once the task is final, no progress write follows its final write.
/// </summary>
public sealed class ProgressTests(FleetFixture fleet) : ApiTest(fleet)
{
    /// <summary>Submits, reads and cancels.</summary>
    protected override string HttpKey => ApiHost.AdminKey;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task HeatReportsProgress_ShownWhileItRuns_AndNotWrittenAfterItEnds(bool processLane)
    {
        await Fleet.StopWorkerAsync();
        var settings = Fleet.WorkerSettings(processLane ? "progress-child" : "progress-thread", cpuConcurrency: 1);
        settings["Worker:ProgressFlushMilliseconds"] = "100";
        if (processLane)
        {
            settings["Worker:ProcessTypes:0"] = "heat";
        }

        await using var worker = WorkerProcess.Start(settings);

        // Long enough to be seen running (it reports every 1,000 steps); cancelled once it has been.
        var id = await SubmitAsync("heat", """{"n": 512, "steps": 100000, "seed": 1}""");
        JsonNode? seen = null;
        Assert.True(await EventuallyAsync(async () =>
        {
            using var response = await Http.GetAsync($"tasks/{id}");
            seen = response.StatusCode == HttpStatusCode.OK ? await ReadJsonAsync(response) : null;
            return seen?["progress"] is not null || (string?)seen?["status"] is "succeeded" or "failed" or "timed_out" or "cancelled";
        }), $"GET /tasks/{id} never showed progress; last seen: {seen?.ToJsonString()}\n{worker.Output}");

        Assert.True((string?)seen!["status"] == "running", $"not running when its progress showed: {seen.ToJsonString()}\n{worker.Output}");
        Assert.InRange((double)seen["progress"]!, 0.01, 0.99);
        Assert.Matches(@"^step \d+000 of 100000$", (string?)seen["progressNote"]);
        Assert.NotNull(seen["progressAt"]);

        // It goes on: a later flush moves it forward.
        var first = (double)seen["progress"]!;
        Assert.True(await EventuallyAsync(async () => (await GetTaskAsync(id))?.Progress > first),
            $"the progress never moved past {first}\n{worker.Output}");

        using (var cancel = await Http.PostAsync($"tasks/{id}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        }

        var final = await WaitForFinalThroughApiAsync(id);
        Assert.Equal("cancelled", (string?)final["status"]);

        // Flushes go on every 100 ms; none may touch the final row. Any later UPDATE of it would give it a new row
        // version (xmin), whatever values it wrote, so the version is compared across several flush intervals (an
        // absence can only be watched for a while).
        var version = await ScalarAsync<string>("SELECT xmin::text FROM fleet.tasks WHERE id = @id", ("id", id));
        await Task.Delay(500);
        Assert.Equal(version, await ScalarAsync<string>("SELECT xmin::text FROM fleet.tasks WHERE id = @id", ("id", id)));
        Assert.False(worker.HasExited, worker.Output);
    }
}
