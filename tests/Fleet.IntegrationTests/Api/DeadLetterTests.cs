using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Api;

/// <summary>
/// <c>/dead-letters</c> and <c>fleet dead-letters</c> on the real broker: messages the worker faulted into the
/// <c>_error</c> queues are listed with their reason (twice, nothing lost or reordered), a replayed task runs, a
/// discard removes, and bad requests and the read scope are refused. The API logs in as <c>fleet_api</c>, so its
/// broker rights on the error queues are shown to suffice. The CLI does the same on quorum queues.
/// </summary>
public sealed class DeadLetterTests(FleetFixture fleet, ITestOutputHelper output) : ApiTest(fleet)
{
    private const string CpuErrors = TaskQueues.Cpu + "_error";
    private const string IoErrors = TaskQueues.Io + "_error";

    [Fact]
    public async Task DeadLetters_AreListedWithTheirReason_ThenReplayedToTheirLaneOrDiscarded()
    {
        // What reaches _error today: bodies that name no task (no taskId, no message_id), as any AMQP producer may
        // send them; the worker faults them there. One is larger than a listing shows, one is not UTF-8.
        var large = "not a task: " + new string('x', 100_000);
        byte[] binary = [0xFF, 0xFE, 0x00, 0x01];
        await PublishRawAsync(TaskQueues.Cpu, "", "not a task at all");
        await PublishRawAsync(TaskQueues.Cpu, "", large);
        await PublishRawAsync(TaskQueues.Io, "", binary);
        Assert.True(await EventuallyAsync(async () => await QueueMessageCountAsync(CpuErrors) == 2 && await QueueMessageCountAsync(IoErrors) == 1),
            "the worker did not fault the bodies without a task id into the error queues");

        // A task whose consume faulted, as it does when PostgreSQL stays away longer than the worker's retries: the
        // message MassTransit moved, with its fault headers, behind the unreadable one.
        var taskId = Guid.CreateVersion7();
        await DeadLetterAsync(IoErrors, taskId.ToString(), $$$"""{"taskId":"{{{taskId}}}","type":"noop","payload":{}}""", "Npgsql.NpgsqlException", "Failed to connect to 127.0.0.1:5432");

        using var reader = Api.CreateClient(ApiHost.ReadKey);
        var first = await ListAsync(reader, "dead-letters");
        output.WriteLine(first.ToJsonString());
        Assert.Equal([(CpuErrors, 2L), (TaskQueues.Cpu + ".dispatch_error", 0L), (IoErrors, 2L), (TaskQueues.Io + ".dispatch_error", 0L)],
            first["queues"]!.AsArray().Select(q => ((string)q!["queue"]!, (long)q["messages"]!)));
        Assert.False((bool)first["truncated"]!);
        var letters = first["deadLetters"]!.AsArray();
        Assert.Equal([CpuErrors, CpuErrors, IoErrors, IoErrors], letters.Select(l => (string)l!["queue"]!));
        Assert.All(letters.Take(3), l =>
        {
            // The worker faults the two lanes' messages in whatever order its consumers finish them; each has
            // MassTransit's reason, and no message id of its own.
            Assert.False(string.IsNullOrEmpty((string?)l!["reason"]));
            Assert.False(string.IsNullOrEmpty((string?)l["exceptionType"]));
            Assert.NotNull(l["faultedAt"]);
            Assert.StartsWith("sha256:", (string)l["messageId"]!, StringComparison.Ordinal);
        });
        var small = letters.Single(l => (string?)l!["body"] == "not a task at all")!;
        Assert.Equal(("utf-8", false, 17), ((string)small["bodyEncoding"]!, (bool)small["bodyTruncated"]!, (int)small["bodyBytes"]!));
        Assert.Contains("invalid JSON", (string)small["reason"]!, StringComparison.Ordinal);
        var cut = letters.Single(l => (bool)l!["bodyTruncated"]!)!;
        Assert.True(((string)cut["reason"]!).Length <= 2000, "the reason, which quotes the body, is cut like the headers");
        Assert.Equal((large[..DeadLetterQueuesMaxBodyBytes], Encoding.UTF8.GetByteCount(large)), ((string)cut["body"]!, (int)cut["bodyBytes"]!));
        Assert.Equal((Convert.ToBase64String(binary), "base64"), ((string)letters[2]!["body"]!, (string)letters[2]!["bodyEncoding"]!));
        Assert.Contains("not valid UTF-8", (string)letters[2]!["reason"]!, StringComparison.Ordinal);
        Assert.Equal((taskId.ToString(), TaskQueues.Io, "Npgsql.NpgsqlException"), ((string)letters[3]!["messageId"]!, (string)letters[3]!["lane"]!, (string)letters[3]!["exceptionType"]!));
        Assert.Equal("Failed to connect to 127.0.0.1:5432", (string)letters[3]!["reason"]!);

        // Listing again loses nothing and keeps the order; the broker now marks them redelivered.
        var again = (await ListAsync(reader, "dead-letters"))["deadLetters"]!.AsArray();
        Assert.Equal(letters.Select(l => (string)l!["messageId"]!), again.Select(l => (string)l!["messageId"]!));
        Assert.All(again, l => Assert.True((bool)l!["redelivered"]!));
        var capped = await ListAsync(reader, $"dead-letters?queue={CpuErrors}&limit=1");
        Assert.Equal((string)letters[0]!["messageId"]!, (string)Assert.Single(capped["deadLetters"]!.AsArray())!["messageId"]!);
        Assert.True((bool)capped["truncated"]!);

        // Bad input is a 400 that names the field; the read scope may list but not replay.
        await AssertProblemAsync(await reader.GetAsync("dead-letters?limit=0"), HttpStatusCode.BadRequest);
        await AssertProblemAsync(await reader.GetAsync($"dead-letters?queue={TaskQueues.Cpu}"), HttpStatusCode.BadRequest);
        await AssertProblemAsync(await reader.PostAsync("dead-letters/replay", Json($$"""{"queue":"{{IoErrors}}","all":true}""")), HttpStatusCode.Forbidden);
        var both = await AssertProblemAsync(await Http.PostAsync("dead-letters/discard", Json($$"""{"queue":"{{CpuErrors}}","all":true,"messageIds":["x"]}""")), HttpStatusCode.BadRequest);
        Assert.NotNull(both["errors"]!["messageIds"]);
        var unknown = await AssertProblemAsync(await Http.PostAsync("dead-letters/replay", Json("""{"queue":"fleet-cpu","messageIds":["x"]}""")), HttpStatusCode.BadRequest);
        Assert.NotNull(unknown["errors"]!["queue"]);
        Assert.Equal((2u, 2u), (await QueueMessageCountAsync(CpuErrors), await QueueMessageCountAsync(IoErrors)));

        // Replay by id: the task goes back to fleet-io, and the worker runs it; an id not there is reported.
        var replayed = await PostAsync("dead-letters/replay", $$"""{"queue":"{{IoErrors}}","messageIds":["{{taskId}}","no-such-id"]}""");
        Assert.Equal((1, "replay"), ((int)replayed["count"]!, (string)replayed["action"]!));
        Assert.Equal(["no-such-id"], replayed["notFound"]!.AsArray().Select(i => (string)i!));
        await WaitForFinalAsync([taskId]);
        Assert.Equal("succeeded", (await GetTaskAsync(taskId))!.Status);
        Assert.Equal(1u, await QueueMessageCountAsync(IoErrors));

        // Discard all of a queue, narrowed by a filter that matches nothing, then not narrowed.
        var none = await PostAsync("dead-letters/discard", $$$"""{"queue":"{{{CpuErrors}}}","all":true,"filter":{"reasonContains":"no such reason"}}""");
        Assert.Equal(0, (int)none["count"]!);
        var discarded = await PostAsync("dead-letters/discard", $$$"""{"queue":"{{{CpuErrors}}}","all":true,"filter":{"exceptionType":"System.Text.Json.JsonReaderException"}}""");
        Assert.Equal(2, (int)discarded["count"]!);
        var left = (await ListAsync(reader, "dead-letters"))["deadLetters"]!.AsArray();
        Assert.Equal([(string)letters[2]!["messageId"]!], left.Select(l => (string)l!["messageId"]!));
    }

    [Fact]
    public async Task Cli_ListsReplaysAndDiscards_OnQuorumErrorQueues()
    {
        await using var vhost = await BrokerVhost.CreateAsync(Fleet, "deadq");
        await using (var connection = await new ConnectionFactory { Uri = new Uri(vhost.AmqpUri) }.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            // The lane and its error queue as a quorum deployment's worker declares them.
            var quorum = QueueTopology.LaneArguments(BrokerQueueType.Quorum);
            await channel.ExchangeDeclareAsync(TaskQueues.Io, ExchangeType.Fanout, durable: true);
            await channel.QueueDeclareAsync(TaskQueues.Io, durable: true, exclusive: false, autoDelete: false, quorum);
            await channel.QueueBindAsync(TaskQueues.Io, TaskQueues.Io, "");
            await channel.QueueDeclareAsync(IoErrors, durable: true, exclusive: false, autoDelete: false, quorum);
        }

        string[] ids = ["dl-a", "dl-b", "dl-c"];
        foreach (var id in ids)
        {
            await DeadLetterAsync(IoErrors, id, $$"""{"taskId":"{{TaskIdForMessageId(id)}}","type":"noop"}""",
                id == "dl-c" ? "System.TimeoutException" : "Npgsql.NpgsqlException", $"fault of {id}", vhost.AmqpUri);
        }

        // The CLI's own build output, with its own dependencies (as BrokerVhost runs `fleet queues migrate`).
        var cli = Repository.PathTo("src", "Fleet.Cli", "bin", new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "fleet.dll");
        var environment = new Dictionary<string, string> { ["ConnectionStrings__rabbitmq"] = vhost.AmqpUri };
        Task<ProcessTools.CommandResult> Cli(params string[] arguments) => ProcessTools.RunAsync(
            "dotnet", [cli, .. arguments], TimeSpan.FromMinutes(2), environment);

        var listed = await Cli("dead-letters", "list", "--queue", IoErrors);
        Assert.True(listed.ExitCode == 0, listed.Output);
        Assert.Equal(ids, ids.OrderBy(id => listed.Output.IndexOf(id, StringComparison.Ordinal)));
        Assert.Contains("fault of dl-c", listed.Output, StringComparison.Ordinal);

        // A second listing: same order, each returned once to the quorum queue (its delivery count).
        var json = await Cli("dead-letters", "list", "--queue", IoErrors, "--json");
        Assert.True(json.ExitCode == 0, json.Output);
        var letters = JsonNode.Parse(json.Output)!["deadLetters"]!.AsArray();
        Assert.Equal(ids, letters.Select(l => (string)l!["messageId"]!));
        Assert.All(letters, l => Assert.Equal(1L, (long)l!["deliveryCount"]!));

        var replay = await Cli("dead-letters", "replay", "--queue", IoErrors, "--all", "--exception-type", "System.TimeoutException");
        Assert.True(replay.ExitCode == 0, replay.Output);
        Assert.Contains($"replayed 1 from {IoErrors}", replay.Output, StringComparison.Ordinal);
        await using (var connection = await new ConnectionFactory { Uri = new Uri(vhost.AmqpUri) }.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            // The copy in the lane: the original's id and body, no fault headers, where it came from.
            var copy = await channel.BasicGetAsync(TaskQueues.Io, autoAck: true);
            Assert.NotNull(copy);
            Assert.Equal("dl-c", copy.BasicProperties.MessageId);
            Assert.Contains(TaskIdForMessageId("dl-c").ToString(), Encoding.UTF8.GetString(copy.Body.Span), StringComparison.Ordinal);
            Assert.DoesNotContain(copy.BasicProperties.Headers!.Keys, k => k.StartsWith("MT-Fault-", StringComparison.Ordinal));
            Assert.Equal(IoErrors, Encoding.UTF8.GetString((byte[])copy.BasicProperties.Headers!["fleet-replayed-from"]!));
        }

        var discard = await Cli("dead-letters", "discard", "--queue", IoErrors, "--id", "dl-a", "--id", "dl-z");
        Assert.True(discard.ExitCode == 1, discard.Output);
        Assert.Contains($"discarded 1 from {IoErrors}", discard.Output, StringComparison.Ordinal);
        Assert.Contains("dl-z", discard.Output, StringComparison.Ordinal);

        var neither = await Cli("dead-letters", "replay", "--queue", IoErrors);
        Assert.True(neither.ExitCode == 2, neither.Output);
        var rest = await Cli("dead-letters", "list", "--queue", IoErrors, "--json");
        Assert.Equal(["dl-b"], JsonNode.Parse(rest.Output)!["deadLetters"]!.AsArray().Select(l => (string)l!["messageId"]!));
    }

    /// <summary>DeadLetterQueues.MaxBodyBytes (the API and the CLI both compile that type): how much of an ASCII body a listing shows.</summary>
    private const int DeadLetterQueuesMaxBodyBytes = 64 * 1024;

    private static async Task<JsonNode> ListAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }

    private async Task<JsonNode> PostAsync(string path, string json)
    {
        using var response = await Http.PostAsync(path, Json(json));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"POST {path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }
}
