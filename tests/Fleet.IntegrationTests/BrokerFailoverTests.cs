using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// A broker address that lists nodes which do not answer besides the real one: a worker process, the API (its bus,
/// its publisher and its management reads) and <see cref="FleetClient"/> pass over the dead nodes and run tasks.
/// The dead nodes are loopback ports nothing listens on, so each refuses at once.
/// </summary>
public sealed class BrokerFailoverTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task AWorkerProcess_TheApiAndFleetClient_PassOverDeadNodes_AndRunTasks()
    {
        var dead = new[] { "127.0.0.1:1", $"127.0.0.1:{ClosedPort()}" };

        // The API's bus starts at the node its connection name picks: the list is written so that this is a dead one,
        // and the real node is the last it tries.
        var apiBusName = $"fleet-api {Environment.MachineName}:{Environment.ProcessId}";
        var apiUri = WithNodes(Fleet.ApiAmqpUri, dead, realLastFor: apiBusName);
        Assert.NotEqual(RealNode(Fleet.ApiAmqpUri), RabbitMqAddress.Parse(apiUri).NodesInOrderFor(apiBusName)[0].ToString());

        await using var worker = WorkerProcess.Start(WithBroker(Fleet.WorkerSettings("failover", cpuConcurrency: 2), WithNodes(Fleet.WorkerAmqpUri, dead)));
        await using var client = new FleetClient(new FleetClientOptions
        {
            PostgresConnectionString = Fleet.PostgresConnectionString,
            RabbitMqUri = WithNodes(Fleet.AmqpUri, dead),
        });
        await using var api = await ApiHost.StartAsync(Fleet, new Dictionary<string, string?>
        {
            ["ConnectionStrings:rabbitmq"] = apiUri,
            ["Api:RabbitMqManagementUri"] = Fleet.ApiManagementUri is { } management ? $"http://127.0.0.1:1/,{management}" : null,
        });
        using var http = api.CreateClient();
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host = 'failover'") == 1, TimeSpan.FromSeconds(120)),
            $"the worker never registered; its output:\n{worker.Output}");

        var batch = Guid.NewGuid();
        var ids = (await client.SubmitManyAsync(StandardRequests.Of("sha256", 20, batch))).ToList();
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.PostAsJsonAsync("tasks", new { type = "noop", payload = new { } });
            Assert.True(response.IsSuccessStatusCode, $"POST /tasks answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            ids.Add((Guid)(await ReadJsonAsync(response))["id"]!);
        }

        await WaitForFinalAsync(ids, TimeSpan.FromSeconds(120));
        Assert.Equal(ids.Count, await ScalarAsync<long>("SELECT count(*) FROM fleet.tasks WHERE id = ANY(@ids) AND status = 'succeeded'", ("ids", ids.ToArray())));
        Assert.Equal(ids.Count, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts a JOIN fleet.workers w ON w.id = a.worker_id WHERE a.task_id = ANY(@ids) AND w.host = 'failover'",
            ("ids", ids.ToArray())));

        // The API's own bus (health check "broker") reached the real node after the dead ones.
        Assert.True(await EventuallyAsync(async () =>
        {
            using var health = await api.CreateClient(apiKey: null).GetAsync("health");
            return health.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(120)), "the API's health never became OK: its bus did not move past the dead nodes");

        if (Fleet.ApiManagementUri is not null)
        {
            // The dead management URI is listed first: the depths come from the next one.
            using var response = await http.GetAsync("stats");
            var stats = await ReadJsonAsync(response);
            Assert.Null((string?)stats["queuesError"]);
            Assert.Contains("fleet-cpu", stats["queues"]!.AsArray().Select(q => (string?)q!["name"]));
        }

        Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(60)));
    }

    /// <summary>
    /// <paramref name="uri"/> with <paramref name="dead"/> listed before its node; with <paramref name="realLastFor"/>,
    /// ordered so that a bus of that connection name tries the real node last.
    /// </summary>
    private static string WithNodes(string uri, string[] dead, string? realLastFor = null)
    {
        var parsed = new Uri(uri);
        List<string> nodes = [.. dead, RealNode(uri)];
        if (realLastFor is not null)
        {
            // NodesInOrderFor turns the list to start at index (hash % count): the real node goes just before that index.
            var start = RabbitMqAddress.Parse(Rebuild(parsed, nodes)).Nodes.ToList()
                .IndexOf(RabbitMqAddress.Parse(Rebuild(parsed, nodes)).NodesInOrderFor(realLastFor)[0]);
            nodes.Remove(RealNode(uri));
            nodes.Insert((start + nodes.Count) % (nodes.Count + 1), RealNode(uri));
        }

        return Rebuild(parsed, nodes);
    }

    private static string Rebuild(Uri parsed, IEnumerable<string> nodes) =>
        $"{parsed.Scheme}://{parsed.UserInfo}@{string.Join(",", nodes)}{parsed.PathAndQuery}";

    private static string RealNode(string uri) => RabbitMqAddress.Parse(uri).Nodes.Single().ToString();

    private static Dictionary<string, string?> WithBroker(Dictionary<string, string?> settings, string amqpUri)
    {
        settings["ConnectionStrings:rabbitmq"] = amqpUri;
        return settings;
    }

    /// <summary>A loopback port nothing listens on (bound once by the OS, then released).</summary>
    private static int ClosedPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task<JsonNode> ReadJsonAsync(HttpResponseMessage response) =>
        JsonNode.Parse(await response.Content.ReadAsStringAsync()) ?? throw new InvalidOperationException("empty JSON body");
}
