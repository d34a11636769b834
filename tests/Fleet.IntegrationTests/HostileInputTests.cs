using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Fleet.ServiceDefaults;
using Fleet.Tasks;
using Fleet.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Bad input never hurts healthy work, and every message that carries a task id ends in exactly one final state.
/// Hostile messages of every kind, each followed by healthy work on both lanes, go through a worker of this test's
/// own (the fixture's, plus a handler whose results and errors PostgreSQL cannot store as they are), whose log is
/// read afterwards.
/// </summary>
public sealed class HostileInputTests(FleetFixture fleet, ITestOutputHelper output) : FleetTest(fleet)
{
    private const int HealthyPerLane = 1_000;
    private const int FiveMegabytes = 5 * 1024 * 1024;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await Fleet.StopWorkerAsync();
    }

    [Fact]
    public async Task HostileMessages_EndFailedWithAReason_WhileHealthyTasksOnBothLanesSucceedExactlyOnce()
    {
        var logs = new CapturingLoggerProvider();
        var worker = await StartWorkerAsync(logs);
        try
        {
            await RunAsync(logs);
        }
        finally
        {
            await worker.StopAsync();
            worker.Dispose();
        }
    }

    private async Task RunAsync(CapturingLoggerProvider logs)
    {
        var clock = Stopwatch.StartNew();

        // Each kind on both lanes, then a thousand healthy tasks on each lane behind it.
        var hostile = new List<Hostile>();
        var healthy = new List<Guid>();
        var messages = new List<RawMessage>();
        foreach (var kind in Kinds())
        {
            foreach (var lane in TaskQueues.All)
            {
                var message = kind(lane);
                hostile.Add(message);
                messages.Add(new RawMessage(lane, message.Body, message.MessageId));
            }

            foreach (var lane in TaskQueues.All)
            {
                for (var i = 0; i < HealthyPerLane; i++)
                {
                    var id = Guid.CreateVersion7();
                    healthy.Add(id);
                    messages.Add(new RawMessage(lane, Encoding.UTF8.GetBytes($$$"""{"taskId":"{{{id}}}","type":"noop","payload":{}}""")));
                }
            }
        }

        await PublishRawManyAsync(messages);
        var withId = hostile.Where(h => h.Id is not null).Select(h => h.Id!.Value).ToList();
        await WaitForFinalAsync([.. healthy, .. withId], TimeSpan.FromSeconds(75));
        output.WriteLine($"{healthy.Count} healthy and {hostile.Count} hostile messages final after {clock.Elapsed.TotalSeconds:0.0} s");

        // Healthy work: every task succeeded, ran once, and has one attempt row.
        Assert.Equal(healthy.Count, (int)await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded' AND attempts = 1", ("ids", healthy.ToArray())));
        Assert.Equal(healthy.Count, (int)await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids)", ("ids", healthy.ToArray())));

        // Hostile messages with an id: one failed row each, with an error type and a clear message, the bad input kept.
        foreach (var message in hostile.Where(h => h.Id is not null))
        {
            var row = await ReadRowAsync(message.Id!.Value);
            var what = $"{message.Kind} on {message.Lane}";
            Assert.True(row is not null, $"{what}: no row");
            Assert.Equal(("failed", message.ErrorType), (row!.Status, row.ErrorType));
            Assert.Contains(message.ErrorMentions, row.ErrorMessage, StringComparison.Ordinal);
            Assert.True(row.ErrorMessage.Length <= 8_000, $"{what}: error_message of {row.ErrorMessage.Length} characters");
            Assert.DoesNotContain('\0', row.ErrorMessage);
            Assert.True(row.Type.Length <= 200, $"{what}: type of {row.Type.Length} characters");
            Assert.Equal(1, row.AttemptRows);
            if (message.KeptInPayload is { } payload)
            {
                Assert.Equal(payload, Original(row.Payload, what));
            }

            if (message.KeptInResult is { } result)
            {
                Assert.Equal(result, Original(row.Result, what));
            }
        }

        // Nothing is left running; only the messages without any id went to the error queues.
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE status = 'running'"));
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE outcome = 'running'"));
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync("fleet-cpu_error") == 1 && await QueueMessageCountAsync("fleet-io_error") == 1,
            TimeSpan.FromSeconds(10)), $"error queues: {await QueueMessageCountAsync("fleet-cpu_error")} and {await QueueMessageCountAsync("fleet-io_error")}, expected 1 and 1");
        Assert.Equal(0L, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE NOT (id = ANY(@ids))", ("ids", healthy.Concat(withId).ToArray())));

        // The worker's log: the reason for each message without an id, and no Npgsql protocol error anywhere.
        var lines = logs.Lines.Where(l => !l.Contains(" scope: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, lines.Count(l => l.Contains("no task id", StringComparison.Ordinal)));
        var protocolErrors = lines.Where(l => l.Contains("backend message", StringComparison.Ordinal) || l.Contains("Please file a bug", StringComparison.Ordinal)).ToList();
        Assert.True(protocolErrors.Count == 0, $"Npgsql protocol errors in the worker's log:\n{string.Join('\n', protocolErrors.Take(3))}");
        output.WriteLine($"checked after {clock.Elapsed.TotalSeconds:0.0} s; {lines.Count} log lines at warning or above");
    }

    /// <summary>Every kind of hostile message, as a function of the lane it is published to.</summary>
    private static IEnumerable<Func<string, Hostile>> Kinds()
    {
        // PostgreSQL's jsonb refuses these payloads; each is stored as base64 with the reason, and never runs.
        yield return lane => WithTaskId("NUL in a payload string", lane, "noop", """{"note":"a\u0000b"}""", "UnstorablePayload", "22P05", keepPayload: true);
        yield return lane => WithTaskId("lone surrogate in a payload string", lane, "noop", """{"note":"\ud800"}""", "UnstorablePayload", "22P02", keepPayload: true);
        yield return lane => WithTaskId("5 MB payload string ending in NUL", lane, "noop", $$"""{"note":"{{new string('n', FiveMegabytes)}}\u0000"}""", "UnstorablePayload", "22P05", keepPayload: true);

        // Readable, and failed by the executor: error texts with NUL, or of 5 MB, are stored clean and bounded.
        yield return lane => WithTaskId("NUL in the type", lane, "no\\u0000pe", "{}", "UnknownTaskType", "no\uFFFDpe");
        yield return lane => WithTaskId("5 MB type", lane, new string('t', FiveMegabytes), "{}", "UnknownTaskType", "ttttt");
        yield return lane => WithTaskId("payload a number", lane, "noop", "5", "ValidationError", "JSON object");

        // Not readable as a task; recorded failed under the body's taskId, else the message_id, with the whole body.
        yield return lane => WithTaskId("payload nested 10,000 levels", lane, "noop", new string('[', 10_000) + new string(']', 10_000), "InvalidMessage", "depth", keepBody: true);
        yield return lane => WithTaskId("lone surrogate in the type", lane, "\\ud800", "{}", "InvalidMessage", "$.type", keepBody: true);
        yield return lane => Unreadable("type an object", lane, id => Encoding.UTF8.GetBytes($$$"""{"taskId":"{{{id}}}","type":{"name":"noop"},"payload":{}}"""), "$.type");
        yield return lane => Unreadable("taskId not a UUID", lane, _ => Encoding.UTF8.GetBytes("""{"taskId":"task-42","type":"noop","payload":{}}"""), "$.taskId", messageId: $"not-a-uuid-{lane}");
        yield return lane => Unreadable("binary body", lane, _ => [0x7B, 0x00, 0x00, 0x22, 0x00, 0x01, 0x02, 0x7F], "0x00", messageId: $"binary-{lane}");
        yield return lane => Unreadable("invalid UTF-8 in a payload string", lane,
            id => [.. Encoding.UTF8.GetBytes($$"""{"taskId":"{{id}}","type":"noop","payload":{"s":" """), 0xC3, 0x28, 0xFF, .. "\"}}"u8], "UTF-8");

        // Run, then refused by PostgreSQL at the write of their result: stored failed, the output kept as base64.
        yield return lane => WithTaskId("NUL in a result", lane, HostileResultHandler.TypeName, """{"kind":"nul-result"}""", "UnstorableResult", "22P05",
            keepResult: """{"text":"a\u0000b"}""");
        yield return lane => WithTaskId("lone surrogate in a result", lane, HostileResultHandler.TypeName, """{"kind":"surrogate-result"}""", "UnstorableResult", "22P02",
            keepResult: """{"text":"\ud800"}""");
        yield return lane => WithTaskId("NUL, lone surrogate and 1 MB in an error text", lane, HostileResultHandler.TypeName, """{"kind":"dirty-error"}""",
            "System.InvalidOperationException", "dirty \uFFFD text \uFFFD xxx");

        // No taskId and no message_id: nothing to record it under; it goes to the error queue, the reason logged.
        yield return lane => new Hostile("no id at all", lane, "not json, and no message id"u8.ToArray(), null, null, "", "", null, null);
    }

    private static Hostile WithTaskId(string kind, string lane, string type, string payload, string errorType, string errorMentions,
        bool keepPayload = false, bool keepBody = false, string? keepResult = null)
    {
        var id = Guid.CreateVersion7();
        var body = Encoding.UTF8.GetBytes($$"""{"taskId":"{{id}}","type":"{{type}}","payload":{{payload}},"maxAttempts":1}""");
        var kept = keepPayload ? Encoding.UTF8.GetBytes(payload) : keepBody ? body : null;
        return new Hostile(kind, lane, body, null, id, errorType, errorMentions, kept, keepResult is null ? null : Encoding.UTF8.GetBytes(keepResult));
    }

    private static Hostile Unreadable(string kind, string lane, Func<Guid, byte[]> body, string errorMentions, string? messageId = null)
    {
        var id = messageId is null ? Guid.CreateVersion7() : TaskIdForMessageId(messageId);
        var bytes = body(id);
        return new Hostile(kind, lane, bytes, messageId, id, "InvalidMessage", errorMentions, bytes, null);
    }

    private static byte[] Original(string? storable, string what)
    {
        Assert.True(storable is not null, $"{what}: nothing stored");
        using var json = JsonDocument.Parse(storable!);
        Assert.True(json.RootElement.TryGetProperty("fleet_unstorable", out var kept), $"{what}: not in storable form: {storable![..Math.Min(200, storable.Length)]}");
        Assert.False(kept.GetProperty("truncated").GetBoolean());
        Assert.False(string.IsNullOrWhiteSpace(kept.GetProperty("reason").GetString()));
        return Convert.FromBase64String(kept.GetProperty("base64").GetString()!);
    }

    private async Task<Row?> ReadRowAsync(Guid id)
    {
        var rows = await ListAsync(
            """
            SELECT status, coalesce(error_type, ''), coalesce(error_message, ''), payload::text, result::text, type,
                   (SELECT count(*) FROM fleet.task_attempts a WHERE a.task_id = t.id)
            FROM fleet.tasks t WHERE id = @id
            """,
            r => new Row(r.GetString(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4),
                r.GetString(5), r.GetInt64(6)),
            ("id", id));
        return rows.SingleOrDefault();
    }

    private async Task<IHost> StartWorkerAsync(CapturingLoggerProvider logs)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(Fleet.WorkerSettings("hostile", cpuConcurrency: 2));
        builder.AddServiceDefaults();
        builder.Logging.AddProvider(logs);
        builder.AddFleetWorker(tasks => tasks.AddTaskHandler<HostileResultHandler>());
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    /// <param name="KeptInPayload">The bytes the row's payload must keep as base64 (the payload, or the whole body).</param>
    /// <param name="KeptInResult">The bytes the row's result must keep as base64.</param>
    private sealed record Hostile(string Kind, string Lane, byte[] Body, string? MessageId, Guid? Id, string ErrorType, string ErrorMentions,
        byte[]? KeptInPayload, byte[]? KeptInResult);

    private sealed record Row(string Status, string ErrorType, string ErrorMessage, string? Payload, string? Result, string Type, long AttemptRows);
}

/// <summary>
/// <c>hostile-result</c>: runs, then ends with what PostgreSQL cannot store as it is: a result with NUL
/// (<c>nul-result</c>) or a lone surrogate (<c>surrogate-result</c>), or an error text with both and a megabyte
/// more (<c>dirty-error</c>).
/// </summary>
public sealed class HostileResultHandler : ITaskHandler
{
    public const string TypeName = "hostile-result";

    public string Type => TypeName;

    public TaskLane Lane => TaskLane.Io;

    public PreparedTask Prepare(JsonElement payload)
    {
        var kind = payload.GetProperty("kind").GetString();
        return _ => kind switch
        {
            "nul-result" => ValueTask.FromResult(JsonDocument.Parse("""{"text":"a\u0000b"}""").RootElement),
            "surrogate-result" => ValueTask.FromResult(JsonDocument.Parse("""{"text":"\ud800"}""").RootElement),
            _ => throw new InvalidOperationException("dirty \0 text \ud800 " + new string('x', 1_000_000)),
        };
    }
}
