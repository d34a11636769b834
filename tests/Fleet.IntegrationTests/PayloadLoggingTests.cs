using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// Payloads are other systems' data (and sometimes their credentials): a worker logs task ids, types and bounded,
/// scrubbed error text, never a payload or a body, even at Debug. Each case carries a marker that must reach the
/// database where the contract keeps it, and must not appear anywhere in the worker's log.
/// </summary>
public sealed class PayloadLoggingTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task NoPayload_BodyOrUrlSecret_ReachesTheWorkersLog_EvenAtDebug()
    {
        var marker = $"SECRET{Guid.NewGuid():N}";
        var settings = Fleet.WorkerSettings("payload-logging", cpuConcurrency: 1);
        settings["Logging:LogLevel:Default"] = "Debug";
        await using var worker = WorkerProcess.Start(settings);

        // Through the client: a succeeded task with the marker in an ignored field, a validation failure on a field
        // holding the marker, an unknown type, and an http-get whose URL carries the marker as password and query.
        var succeeded = await Fleet.Client.SubmitAsync(TaskRequest.Create("noop", new { note = marker }));
        var invalid = await Fleet.Client.SubmitAsync(TaskRequest.Create("sleep", new { ms = marker }));
        var unknown = await Fleet.Client.SubmitAsync(TaskRequest.Create("no-such-type", new { note = marker }) with { Queue = TaskQueues.Io });
        var refused = await Fleet.Client.SubmitAsync(
            TaskRequest.Create("http-get", new { url = $"http://user:{marker}@127.0.0.1:9/{marker}?token={marker}", timeoutMs = 1000 }) with { MaxAttempts = 1 });

        // Straight onto the lanes: a body that is not JSON but has a task id (kept in payload as base64), and a body
        // without any id (faulted to the error queue).
        var unreadable = Guid.NewGuid();
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{unreadable}}","type":"noop","payload":{"x":"{{marker}}"}""", unreadable.ToString());
        await PublishRawAsync("fleet-io", "", $$"""{"type":"noop","payload":{"x":"{{marker}}"},""");

        await WaitForFinalAsync([succeeded, invalid, unknown, refused, unreadable]);
        var states = await ListAsync(
            "SELECT status FROM fleet.tasks WHERE id = ANY(@ids) ORDER BY status",
            r => r.GetString(0), ("ids", new[] { succeeded, invalid, unknown, refused, unreadable }));
        Assert.Equal(["failed", "failed", "failed", "failed", "succeeded"], states);
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync("fleet-io_error") >= 1));

        // The worker did log these tasks (so the check below is not vacuous) ...
        Assert.Contains(refused.ToString(), worker.Output, StringComparison.Ordinal);
        Assert.Contains(invalid.ToString(), worker.Output, StringComparison.Ordinal);
        // ... and never the marker.
        var leaks = worker.Output.Split('\n').Where(line => line.Contains(marker, StringComparison.Ordinal)).ToList();
        Assert.True(leaks.Count == 0, $"the worker logged payload data:{Environment.NewLine}{string.Join(Environment.NewLine, leaks)}");
    }
}
