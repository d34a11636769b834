using System.Globalization;
using System.Text;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests;

/// <summary>
/// Thousands of random and malformed plain-JSON messages published raw onto the lanes (as any AMQP client may,
/// docs/publishing.md), through two real worker processes. Every case that carries a usable task id (a UUID
/// <c>taskId</c> at the body's top level, else an AMQP <c>message_id</c>) ends in exactly one final row, a failed one
/// with its error type and message; nothing stays queued or running; every case without one is in its lane's
/// <c>_error</c> queue with MassTransit's fault reason, so that rows and error messages add up to the cases; and the
/// workers are the processes that started. The cases come from one seeded generator: a failure names its seed and
/// case, and replays with <c>FLEET_FUZZ_SEED</c> (and more cases with <c>FLEET_FUZZ_CASES</c>).
/// </summary>
public sealed class AmqpFuzzTests(FleetFixture fleet, ITestOutputHelper output) : OwnWorkersTest(fleet)
{
    private static readonly string[] Types = ["noop", "sha256", "sieve", "sleep", "heat", "http-get", "nope", "", "NOOP", "no\\u0000pe", "\\ud800"];
    private static readonly string[] ContentTypes =
        ["application/json", "application/json", "application/json", "text/plain", "application/vnd.masstransit+json", "application/octet-stream",
         "application/json; charset=utf-16", "", "garbage/\u00e9\u00e9", ";;;"];

    // Numbers that keep a valid task cheap (n and steps of heat, limit of sieve, size_kb of sha256, ms of sleep), and
    // values no field accepts.
    private static readonly string[] Values =
        ["0", "1", "3", "16", "-1", "1.5", "1e400", "\"1\"", "null", "true", "12345678901234567890", "[]", "{}", "\"\\u0000\"", "\"\\udc00\""];

    [Fact]
    public async Task RandomAndMalformedMessages_EachEndInOneFinalRowOrTheErrorQueue_AndTheWorkersLiveOn()
    {
        var seed = Fuzz.Seed;
        var count = Fuzz.Cases(2500);
        var replay = $"replay: FLEET_FUZZ_SEED={seed} FLEET_FUZZ_CASES={count} make test-integration TEST_FILTER=FullyQualifiedName~AmqpFuzzTests";
        var cases = Generate(seed, count);

        await using var a = WorkerProcess.Start(Fleet.WorkerSettings("fuzz-a", cpuConcurrency: 1));
        await using var b = WorkerProcess.Start(Fleet.WorkerSettings("fuzz-b", cpuConcurrency: 1));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE host LIKE 'fuzz-%' AND state = 'running'") == 2),
            "both workers should register");
        var pids = (a.Pid, b.Pid);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await PublishAsync(cases);
        output.WriteLine($"seed {seed}: {cases.Count} cases published in {clock.Elapsed.TotalSeconds:0.0} s");

        // Settled: every case that must have a row has a final one, and the error queues hold exactly the cases that
        // have none. Retries and redeliveries may take a while; a lost or stuck message never settles.
        Dictionary<Guid, Row> rows = [];
        (long Cpu, long Io) errors = default, expected = default;
        var settled = await EventuallyAsync(async () =>
        {
            rows = (await ListAsync("SELECT id, status, coalesce(error_type, ''), coalesce(error_message, '') FROM fleet.tasks",
                r => new Row(r.GetGuid(0), r.GetString(1), r.GetString(2), r.GetString(3)))).ToDictionary(r => r.Id);
            errors = (await QueueMessageCountAsync("fleet-cpu_error"), await QueueMessageCountAsync("fleet-io_error"));
            expected = (cases.LongCount(c => c.Lane == TaskQueues.Cpu && !HasRow(c, rows)), cases.LongCount(c => c.Lane == TaskQueues.Io && !HasRow(c, rows)));
            return rows.Values.All(r => r.IsFinal) && cases.All(c => !c.MustHaveRow || HasRow(c, rows)) && errors == expected;
        }, TimeSpan.FromSeconds(150));
        output.WriteLine($"{rows.Count} rows and {errors.Cpu} + {errors.Io} error-queue messages after {clock.Elapsed.TotalSeconds:0.0} s");

        var failures = new List<string>();
        void Fail(FuzzCase c, string what) => failures.Add($"seed {seed} case {c.Index} ({c}): {what}");
        var known = cases.SelectMany(c => c.Candidates).ToHashSet();
        foreach (var c in cases)
        {
            var found = c.Candidates.Where(rows.ContainsKey).ToList();
            if (found.Count > 1)
            {
                Fail(c, $"rows under {found.Count} of its ids");
            }
            else if (found.Count == 0 && c.MustHaveRow)
            {
                Fail(c, "no row, though it names a task");
            }
            else if (found.Count == 1 && rows[found[0]] is var row && (!row.IsFinal || (row.Status != "succeeded" && (row.ErrorType.Length == 0 || row.ErrorMessage.Length == 0))))
            {
                Fail(c, $"row {row.Id} is {row.Status} with error '{row.ErrorType}': '{row.ErrorMessage}'");
            }
        }

        foreach (var stray in rows.Keys.Where(id => !known.Contains(id)).Take(5))
        {
            failures.Add($"seed {seed}: a row under {stray}, an id no case carries");
        }

        var running = await ScalarAsync<long>("SELECT count(*) FROM fleet.task_attempts WHERE outcome = 'running'");
        if (!settled || running > 0)
        {
            failures.Add($"seed {seed}: not settled after {clock.Elapsed.TotalSeconds:0} s: error queues {errors} for {expected} cases without a row, "
                + $"{rows.Values.Count(r => !r.IsFinal)} rows not final, {running} attempts running");
        }

        var reasons = await ErrorQueueReasonsAsync();
        if (reasons.Any(string.IsNullOrWhiteSpace))
        {
            failures.Add($"seed {seed}: {reasons.Count(string.IsNullOrWhiteSpace)} error-queue messages without a fault reason");
        }

        if (a.HasExited || b.HasExited || (a.Pid, b.Pid) != pids
            || await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE host LIKE 'fuzz-%'") != 2
            || await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE host LIKE 'fuzz-%' AND state = 'running'") != 2)
        {
            failures.Add($"seed {seed}: the workers did not live on (exited: {a.HasExited}, {b.HasExited}); their output:\n{a.Output}\n{b.Output}");
        }

        Assert.True(failures.Count == 0, $"{failures.Count} failures; {replay}\n{string.Join("\n", failures.Take(20))}");
        var byStatus = rows.Values.GroupBy(r => r.Status).ToDictionary(g => g.Key, g => g.Count());
        Assert.True(byStatus.ContainsKey("succeeded") && byStatus.ContainsKey("failed") && errors.Cpu + errors.Io > 0,
            $"the generator should produce valid tasks, failed ones and messages without an id; {replay}");
        output.WriteLine(string.Join(", ", byStatus.Select(p => $"{p.Value} {p.Key}")) + $"; {errors.Cpu + errors.Io} in the error queues");
    }

    private static bool HasRow(FuzzCase c, Dictionary<Guid, Row> rows) => c.Candidates.Any(rows.ContainsKey);

    /// <summary>Publishes every case in order over one channel with publisher confirms, with its own properties.</summary>
    private async Task PublishAsync(List<FuzzCase> cases)
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var pending = new List<Task>();
        foreach (var c in cases)
        {
            var properties = new BasicProperties
            {
                ContentType = c.ContentType,
                DeliveryMode = c.Index % 3 == 0 ? DeliveryModes.Transient : DeliveryModes.Persistent,
                MessageId = c.MessageId,
                Headers = c.Headers,
                CorrelationId = c.Index % 7 == 0 ? "not-a-guid" : null,
                Type = c.Index % 11 == 0 ? "urn:message:Fleet.Contracts:ProcessTask" : null,
            };
            pending.Add(c.ViaDefaultExchange
                ? channel.BasicPublishAsync("", c.Lane, mandatory: true, properties, c.Body).AsTask()
                : channel.BasicPublishAsync(c.Lane, "", mandatory: true, properties, c.Body).AsTask());
            if (pending.Count == 256)
            {
                await Task.WhenAll(pending);
                pending.Clear();
            }
        }

        await Task.WhenAll(pending);
    }

    /// <summary>Takes every message off both error queues and returns the fault reason MassTransit gave each.</summary>
    private async Task<List<string>> ErrorQueueReasonsAsync()
    {
        await using var connection = await Fleet.OpenRabbitAsync();
        await using var channel = await connection.CreateChannelAsync();
        var reasons = new List<string>();
        foreach (var queue in new[] { "fleet-cpu_error", "fleet-io_error" })
        {
            while (await channel.BasicGetAsync(queue, autoAck: true) is { } message)
            {
                var reason = message.BasicProperties.Headers?.TryGetValue("MT-Fault-Message", out var value) == true ? value : null;
                reasons.Add(reason is byte[] bytes ? Encoding.UTF8.GetString(bytes) : reason?.ToString() ?? "");
            }
        }

        return reasons;
    }

    private static List<FuzzCase> Generate(int seed, int count)
    {
        var random = new Random(seed);
        var cases = new List<FuzzCase>(count);
        for (var i = 0; i < count; i++)
        {
            cases.Add(Generate(random, i, cases));
        }

        return cases;
    }

    /// <summary>One case: its lane, body, properties, the ids it may be recorded under, and whether it must be.</summary>
    private static FuzzCase Generate(Random random, int index, List<FuzzCase> earlier)
    {
        var lane = random.Next(2) == 0 ? TaskQueues.Cpu : TaskQueues.Io;
        var viaDefault = random.Next(4) == 0;
        var contentType = ContentTypes[random.Next(ContentTypes.Length)];
        var headers = random.Next(6) == 0 ? RandomHeaders(random) : null;

        // The same message again, or another body under an id an earlier case used: one row for the id either way.
        if (earlier.Count > 0 && random.Next(30) == 0)
        {
            var again = earlier[random.Next(earlier.Count)];
            return again with { Index = index, Kind = $"repeat of case {again.Index}" };
        }

        if (earlier.Count > 0 && random.Next(30) == 0 && earlier.FirstOrDefault(e => e.IntactId is not null && random.Next(4) == 0) is { } original)
        {
            var members = new List<byte[]> { Member("taskId", $"\"{original.IntactId}\""), Member("type", Quote(Types[random.Next(Types.Length)])), Member("payload", Payload(random)) };
            return new FuzzCase(index, $"id of case {original.Index}", lane, viaDefault, Object(members), contentType, null, headers,
                [original.IntactId!.Value], true, original.IntactId);
        }

        // The ids: a UUID taskId (in any letter case), a message_id, both, neither, or a taskId no UUID.
        var idMode = random.Next(10);
        Guid? bodyId = idMode < 6 || idMode == 9 ? RandomGuid(random) : null;
        string? messageId = idMode is >= 4 and <= 6 ? MessageId(random, index) : null;
        var taskIdMember = bodyId is { } id
            ? Member(random.Next(8) == 0 ? "TaskId" : "taskId", $"\"{id}\"")
            : idMode == 8 ? Member("taskId", Pick(random, "\"\"", "\"not-a-uuid\"", "0", "null", "\"00000000-0000-0000-0000-000000000000\"", "{\"a\":1}", "\"{" + RandomGuid(random) + "}x\"")) : null;
        if (idMode == 8 && random.Next(2) == 0)
        {
            messageId = MessageId(random, index);
        }

        var kind = Pick(random, "valid", "valid", "valid", "wrong types", "unknown type", "escapes", "raw invalid UTF-8", "huge string", "deep nesting",
            "truncated", "not JSON", "mutated", "mutated", "empty");
        var fields = new List<byte[]>();
        if (taskIdMember is not null)
        {
            fields.Add(taskIdMember);
        }

        var intact = true;
        byte[] body;
        switch (kind)
        {
            case "wrong types":
                fields.Add(Member("type", Pick(random, "1", "{\"name\":\"noop\"}", "[\"noop\"]", "null", "true", "\"noop\"")));
                fields.Add(Member("payload", Pick(random, "\"{}\"", "1", "[]", "null", "{}")));
                fields.Add(Member(Pick(random, "timeoutSeconds", "maxAttempts", "priority", "batchId", "submittedAt"), Pick(random, "\"x\"", "1e400", "-1", "{}", "\"yesterday\"", "99999999999")));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
            case "unknown type":
                fields.Add(Member("type", Quote(Pick(random, "render-video", "", " ", new string('t', random.Next(1, 5000)), "NOOP", "noop "))));
                fields.Add(Member("payload", "{}"));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
            case "escapes":
                fields.Add(Member("type", Quote(Pick(random, "noop", "no\\u0000op", "\\ud800", "\\udfff", "\\ud83d\\ude00"))));
                fields.Add(Member("payload", $"{{{RandomString(random)}: {RandomString(random)}, \"ms\": 1, \"\\u0000\": \"\\ud800\"}}"));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
            case "raw invalid UTF-8":
                // After the id: a reader that stops at the bad bytes has found it already.
                fields.Add(Member("type", "\"noop\""));
                fields.Add([.. "\"payload\":{\"s\":\""u8, .. Fuzz.RandomBytes(random, random.Next(1, 6)).Select(x => (byte)(x | 0x80)), .. "\"}"u8]);
                body = Object(fields);
                break;
            case "huge string":
                fields.Add(Member("type", "\"noop\""));
                fields.Add(Member("payload", $"{{\"note\":\"{new string('h', random.Next(100_000, 1_000_000))}{Pick(random, "", "\\u0000", "\\ud800")}\"}}"));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
            case "deep nesting":
                var depth = Pick(random, 10, 63, 64, 65, 1000, 20_000);
                fields.Add(Member("type", "\"noop\""));
                fields.Add(Member("payload", new string('[', depth) + new string(']', depth)));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
            case "truncated":
                fields.AddRange(TaskMembers(random));
                var whole = Object(fields);
                body = whole[..random.Next(0, whole.Length)];
                intact = false;
                break;
            case "not JSON":
                body = random.Next(3) switch
                {
                    0 => Fuzz.RandomBytes(random, random.Next(1, 400)),
                    1 => Encoding.UTF8.GetBytes(Pick(random, "hello", "<task/>", "null", "42", "\"taskId\"", "[{}]", "{", "}")),
                    _ => [0xEF, 0xBB, 0xBF, .. Object([.. fields, .. TaskMembers(random)])], // a byte-order mark before JSON
                };
                intact = false;
                break;
            case "mutated":
                fields.AddRange(TaskMembers(random));
                body = Fuzz.Mutate(random, Object(fields), bodyId is { } keep ? Encoding.UTF8.GetBytes(keep.ToString()) : null);
                intact = false;
                break;
            case "empty":
                body = [];
                intact = false;
                break;
            default:
                fields.AddRange(TaskMembers(random));
                body = Object(Shuffle(random, fields, keepFirst: false));
                break;
        }

        var candidates = new List<Guid>();
        if (bodyId is { } bid)
        {
            candidates.Add(bid);
        }

        if (messageId is not null)
        {
            candidates.Add(TaskIdForMessageId(messageId));
        }

        var intactId = intact ? bodyId : null;
        return new FuzzCase(index, kind, lane, viaDefault, body, contentType, messageId, headers, [.. candidates], messageId is not null || intactId is not null, intactId);
    }

    /// <summary>The members of a task body: a type, a payload that is often valid for it, and now and then other fields.</summary>
    private static IEnumerable<byte[]> TaskMembers(Random random)
    {
        // Half the types are built-in ones, so that many cases run.
        yield return Member("type", Quote(random.Next(2) == 0 ? Types[random.Next(5)] : Types[random.Next(Types.Length)]));
        if (random.Next(8) != 0)
        {
            yield return Member("payload", Payload(random));
        }

        foreach (var field in new[] { "priority", "timeoutSeconds", "maxAttempts", "batchId", "submittedAt", "x" }.Where(_ => random.Next(6) == 0))
        {
            yield return Member(field, field switch
            {
                "timeoutSeconds" => Pick(random, "1", "5", "0", "-1", "\"x\"", "1e400", "99999", "null"),
                "maxAttempts" => Pick(random, "1", "3", "0", "-5", "1000", "\"3\"", "null"),
                "batchId" => Pick(random, $"\"{RandomGuid(random)}\"", "\"b\"", "null"),
                "submittedAt" => Pick(random, "\"2026-11-28T12:00:00Z\"", "\"yesterday\"", "0", "\"9999-12-31T23:59:59Z\""),
                _ => Values[random.Next(Values.Length)],
            });
        }

        if (random.Next(20) == 0)
        {
            yield return Member("type", Quote(Types[random.Next(Types.Length)])); // a duplicate member name
        }
    }

    /// <summary>Mostly the cheap valid payload of every built-in type at once; else values no field accepts.</summary>
    private static string Payload(Random random) => random.Next(4) switch
    {
        0 => $"{{\"size_kb\":{V(random)},\"rounds\":{V(random)},\"seed\":{V(random)},\"limit\":{V(random)},\"ms\":{V(random)},\"n\":{V(random)},\"steps\":{V(random)},\"url\":{RandomString(random)}}}",
        1 => Pick(random, "[]", "null", "\"{}\"", "5", "{\"a\":{\"b\":[1,2,{\"c\":null}]}}"),
        _ => """{"size_kb":1,"rounds":1,"seed":7,"limit":100,"ms":1,"n":16,"steps":1}""",
    };

    private static string V(Random random) => Values[random.Next(Values.Length)];

    private static Dictionary<string, object?> RandomHeaders(Random random) => new()
    {
        [Pick(random, "x-fuzz", "MT-Fault-Message", "Content-Type", "x-death", "MT-Redelivery-Count", "\u00e9\u00e9")] = random.Next(4) switch
        {
            0 => Encoding.UTF8.GetBytes(RandomString(random)),
            1 => (long)random.Next(),
            2 => null,
            _ => Fuzz.RandomBytes(random, random.Next(0, 40)),
        },
    };

    /// <summary>A JSON string with the escapes real systems send: NUL, lone and paired surrogates, control characters.</summary>
    private static string RandomString(Random random)
    {
        var text = new StringBuilder("\"");
        for (var i = random.Next(0, 12); i > 0; i--)
        {
            text.Append(random.Next(10) switch
            {
                0 => "\\u0000",
                1 => "\\ud800",
                2 => "\\udfff",
                3 => "\\ud83d\\ude00",
                4 => "\\n\\t\\\"\\\\",
                5 => "é漢",
                _ => ((char)random.Next('a', 'z' + 1)).ToString(),
            });
        }

        return text.Append('"').ToString();
    }

    private static string MessageId(Random random, int index) => random.Next(3) switch
    {
        0 => RandomGuid(random).ToString(),
        1 => $"fuzz-{index}-{random.Next()}",
        _ => $"\u00fc\u00f6 {index} {random.Next()}",
    };

    private static Guid RandomGuid(Random random)
    {
        var bytes = new byte[16];
        random.NextBytes(bytes);
        return new Guid(bytes);
    }

    private static byte[] Member(string name, string json) => Encoding.UTF8.GetBytes($"\"{name}\":{json}");

    private static byte[] Object(IEnumerable<byte[]> members) =>
        [.. "{"u8, .. members.SelectMany((m, i) => i == 0 ? m : [(byte)',', .. m]), .. "}"u8];

    private static List<byte[]> Shuffle(Random random, List<byte[]> members, bool keepFirst) =>
        keepFirst ? [members[0], .. members.Skip(1).OrderBy(_ => random.Next())] : [.. members.OrderBy(_ => random.Next())];



    private static T Pick<T>(Random random, params T[] choices) => choices[random.Next(choices.Length)];

    private static string Quote(string text) => $"\"{text}\"";

    /// <param name="Candidates">The ids the case may be recorded under: its body's UUID taskId, its message_id's.</param>
    /// <param name="MustHaveRow">It names a task however the body reads: a message_id, or an intact body with a UUID taskId.</param>
    /// <param name="IntactId">The taskId of an intact body, which another case may reuse.</param>
    private sealed record FuzzCase(int Index, string Kind, string Lane, bool ViaDefaultExchange, byte[] Body, string? ContentType, string? MessageId,
        Dictionary<string, object?>? Headers, Guid[] Candidates, bool MustHaveRow, Guid? IntactId)
    {
        public override string ToString() =>
            $"{Kind} on {Lane}{(ViaDefaultExchange ? " via the default exchange" : "")}, content type '{ContentType}', message_id '{MessageId}', "
            + $"headers {(Headers is null ? "none" : string.Join(",", Headers.Keys))}, {Body.Length} bytes: "
            + (Body.Length <= 200 ? Convert.ToBase64String(Body) : Convert.ToBase64String(Body, 0, 200) + "...");
    }

    private sealed record Row(Guid Id, string Status, string ErrorType, string ErrorMessage)
    {
        public bool IsFinal => Status is "succeeded" or "failed" or "timed_out" or "cancelled";
    }
}
