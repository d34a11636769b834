using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>Any AMQP client may publish the plain JSON body (docs/publishing.md); no MassTransit on the publishing side.</summary>
public sealed class PlainJsonTests(FleetFixture fleet) : FleetTest(fleet)
{
    [Fact]
    public async Task PlainJson_PublishedToTheCpuExchange_IsProcessedAndPersisted()
    {
        var id = Guid.NewGuid();
        var body = $$"""{"taskId":"{{id}}","type":"sha256","payload":{"size_kb":1024,"rounds":32,"seed":7},"priority":0,"timeoutSeconds":300,"maxAttempts":3,"batchId":null,"submittedAt":"2026-11-28T12:00:00Z"}""";

        await PublishRawAsync("fleet-cpu", "", body);
        await WaitForFinalAsync([id]);

        var info = await GetTaskAsync(id);
        Assert.Equal("succeeded", info!.Status);
        Assert.Contains("1031ff50e74edab1206d326f41a90b9132aed13d5e613a77aaac89d57a379128", info.Result, StringComparison.Ordinal);
        Assert.Equal("fleet-cpu", info.Queue);
        Assert.Equal(1L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id", ("id", id)));
    }

    [Fact]
    public async Task PlainJson_ThroughTheDefaultExchange_WithoutTaskId_UsesTheAmqpMessageId()
    {
        var id = Guid.NewGuid();
        var body = """{"type":"sieve","payload":{"limit":2000000}}""";

        await PublishRawAsync("", "fleet-cpu", body, id.ToString());
        await WaitForFinalAsync([id]);

        var info = await GetTaskAsync(id);
        Assert.Equal("succeeded", info!.Status);
        Assert.Equal("""{"count": 148933}""", info.Result);
    }

    [Fact]
    public async Task InvalidPayloads_EndFailed_WithErrorTypeAndMessage()
    {
        var tooBig = Guid.NewGuid();
        var wrongType = Guid.NewGuid();
        var unknown = Guid.NewGuid();
        var notObject = Guid.NewGuid();

        await PublishRawAsync("fleet-cpu", "", Body(tooBig, "sieve", """{"limit":1000000000000}"""));
        await PublishRawAsync("fleet-cpu", "", Body(wrongType, "heat", """{"n":"large","steps":10,"seed":1}"""));
        await PublishRawAsync("fleet-io", "", Body(unknown, "render-video", "{}"));
        await PublishRawAsync("fleet-io", "", Body(notObject, "noop", "[1,2,3]"));
        await WaitForFinalAsync([tooBig, wrongType, unknown, notObject]);

        var sieve = await GetTaskAsync(tooBig);
        Assert.Equal(("failed", "ValidationError"), (sieve!.Status, sieve.ErrorType));
        Assert.Contains("limit", sieve.ErrorMessage, StringComparison.Ordinal);
        var heat = await GetTaskAsync(wrongType);
        Assert.Equal(("failed", "ValidationError"), (heat!.Status, heat.ErrorType));
        Assert.Contains("heat", heat.ErrorMessage, StringComparison.Ordinal);
        var other = await GetTaskAsync(unknown);
        Assert.Equal(("failed", "UnknownTaskType"), (other!.Status, other.ErrorType));
        Assert.Contains("sha256", other.ErrorMessage, StringComparison.Ordinal);
        var array = await GetTaskAsync(notObject);
        Assert.Equal(("failed", "ValidationError"), (array!.Status, array.ErrorType));
        Assert.Equal(4L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND outcome = 'failed' AND error_message IS NOT NULL",
            ("ids", new[] { tooBig, wrongType, unknown, notObject })));
    }

    [Fact]
    public async Task NonJsonBody_WithAMessageId_EndsFailedWithTheBodyKept_AndTheWorkerKeepsProcessing()
    {
        await PublishRawAsync("fleet-cpu", "", "this is not json {", "garbage-1");
        var garbage = TaskIdForMessageId("garbage-1");
        var good = Guid.NewGuid();
        await PublishRawAsync("fleet-cpu", "", Body(good, "sieve", """{"limit":100}"""));
        await WaitForFinalAsync([garbage, good]);

        var info = await GetTaskAsync(garbage);
        Assert.Equal(("failed", "InvalidMessage"), (info!.Status, info.ErrorType));
        Assert.Contains("could not be read as a task", info.ErrorMessage, StringComparison.Ordinal);
        using var payload = System.Text.Json.JsonDocument.Parse(info.Payload);
        var kept = payload.RootElement.GetProperty("fleet_unstorable").GetProperty("base64").GetString()!;
        Assert.Equal("this is not json {", System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(kept)));
        Assert.Equal("succeeded", (await GetTaskAsync(good))!.Status);
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-cpu_error"));
    }

    [Fact]
    public async Task PriorityOutsideZeroToNine_EndsFailedAsAnInvalidMessage_NamingTheField_WithoutRunning()
    {
        var tooHigh = Guid.NewGuid();
        var negative = Guid.NewGuid();
        var highest = Guid.NewGuid();
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{tooHigh}}","type":"noop","payload":{},"priority":10}""");
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{negative}}","type":"noop","payload":{},"priority":-1}""");
        await PublishRawAsync("fleet-io", "", $$"""{"taskId":"{{highest}}","type":"noop","payload":{},"priority":9}""");
        await WaitForFinalAsync([tooHigh, negative, highest]);

        foreach (var (id, priority) in new[] { (tooHigh, 10), (negative, -1) })
        {
            var info = await GetTaskAsync(id);
            Assert.Equal(("failed", "InvalidMessage"), (info!.Status, info.ErrorType));
            Assert.Contains($"'priority' must be an integer from 0 to 9 (higher first), not {priority}", info.ErrorMessage, StringComparison.Ordinal);
        }

        Assert.Equal("succeeded", (await GetTaskAsync(highest))!.Status);
        Assert.Equal(0u, await QueueMessageCountAsync("fleet-io_error"));
    }

    [Fact]
    public async Task NonJsonBody_WithoutAnyId_GoesToTheErrorQueue_AndTheWorkerKeepsProcessing()
    {
        await PublishRawAsync("fleet-cpu", "", "this is not json {");

        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync("fleet-cpu_error") == 1), "the unreadable message never reached fleet-cpu_error");

        var good = Guid.NewGuid();
        await PublishRawAsync("fleet-cpu", "", Body(good, "sieve", """{"limit":100}"""));
        await WaitForFinalAsync([good]);
        Assert.Equal("succeeded", (await GetTaskAsync(good))!.Status);
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id <> @id", ("id", good)));
    }

    private static string Body(Guid taskId, string type, string payloadJson) =>
        $"{{\"taskId\":\"{taskId}\",\"type\":\"{type}\",\"payload\":{payloadJson}}}";
}
