using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Fleet.Messaging;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

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
    /// Every broker node down at start and the worker told to stop while its bus still retries: it stops like any
    /// worker (exit 0, recorded "stopped"), not on an unhandled exception that leaves it "running" in SQL. A worker
    /// whose first nodes are dead can be stopped within those seconds too, which the test above hit now and then.
    /// </summary>
    [Fact]
    public async Task AWorkerStopped_WhileItsBusIsStillConnecting_StopsCleanly()
    {
        var dead = Rebuild(new Uri(Fleet.WorkerAmqpUri), ["127.0.0.1:1", $"127.0.0.1:{ClosedPort()}"]);
        await using var worker = WorkerProcess.Start(WithBroker(Fleet.WorkerSettings("no-broker", cpuConcurrency: 1), dead));
        Assert.True(await EventuallyAsync(async () => await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state = 'running' AND host = 'no-broker'") == 1, TimeSpan.FromSeconds(120)),
            $"the worker never registered; its output:\n{worker.Output}");
        Assert.True(await EventuallyAsync(() => Task.FromResult(worker.Output.Contains("Connection Failed", StringComparison.Ordinal)), TimeSpan.FromSeconds(60)),
            $"the bus never tried a node; its output:\n{worker.Output}");

        Assert.Equal(0, await worker.TerminateAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("Stopped before the bus had started", worker.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", worker.Output, StringComparison.Ordinal);
        Assert.Equal(0, await ScalarAsync<long>("SELECT count(*) FROM fleet.workers WHERE state <> 'stopped' AND host = 'no-broker'"));
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

/// <summary>
/// Several nodes over TLS, against the real TLS listener of <see cref="Tls.TlsFixture"/>: its certificate names
/// 127.0.0.1 only, so the same listener dialled as <c>localhost</c> is a node whose certificate must be refused, and
/// 127.0.0.1 one whose certificate must pass, whatever name the client sent in the handshake.
/// </summary>
[Collection(Tls.TlsCollection.Name)]
public sealed class BrokerFailoverTlsTests(Tls.TlsFixture tls)
{
    [Fact]
    public async Task EachNode_IsCheckedUnderItsOwnName_ByFleetsConnectionsAndByTheBus()
    {
        var one = new Uri(tls.Amqps());
        var broker = RabbitMqAddress.Parse($"amqps://{one.UserInfo}@localhost:{tls.AmqpTlsPort},127.0.0.1:{tls.AmqpTlsPort}{one.PathAndQuery}") with
        {
            Certificates = new Fleet.Client.Tls.ServerCertificateValidator(tls.CaFile, "the test CA"),
        };

        // Fleet's own connections, in whatever order the client tries the nodes: localhost is refused, 127.0.0.1 is used.
        for (var i = 0; i < 4; i++)
        {
            await using var connection = await broker.ConnectAsync("fleet-tls-cluster-test", CancellationToken.None);
            Assert.Equal("127.0.0.1", connection.Endpoint.HostName);
        }

        // A bus whose order starts at localhost: MassTransit sends "localhost" as the TLS server name to both nodes.
        var name = Enumerable.Range(0, 100).Select(i => $"fleet-tls-cluster-bus {i}").First(n => broker.NodesInOrderFor(n)[0].Host == "localhost");
        var logs = new CapturingLoggerProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        services.AddMassTransit(x =>
        {
            x.DisableUsageTelemetry();
            x.UsingRabbitMq((_, cfg) => cfg.UseFleetHost(broker, name));
        });
        await using var provider = services.BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await bus.StartAsync(timeout.Token);
        try
        {
            Assert.True(await EventuallyHealthyAsync(bus, TimeSpan.FromSeconds(120)), string.Join('\n', logs.Lines.TakeLast(30)));
            Assert.Contains(logs.Lines, line => line.Contains($"RabbitMQ at localhost:{tls.AmqpTlsPort} refused", StringComparison.Ordinal)
                && line.Contains("does not name this host", StringComparison.Ordinal));
            Assert.DoesNotContain(logs.Lines, line => line.Contains($"RabbitMQ at 127.0.0.1:{tls.AmqpTlsPort} refused", StringComparison.Ordinal));
        }
        finally
        {
            await bus.StopAsync(CancellationToken.None);
        }
    }

    private static async Task<bool> EventuallyHealthyAsync(IBusControl bus, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (bus.CheckHealth().Status == BusHealthStatus.Healthy)
            {
                return true;
            }

            await Task.Delay(250);
        }

        return false;
    }
}
