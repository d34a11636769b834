using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.MultiHost;

/// <summary>The broker-cluster tests run alone: three broker nodes, three workers and PostgreSQL load both cores.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "broker-cluster";
}

/// <summary>
/// Three simulated servers (<see cref="SimulatedNetwork"/>), each with a RabbitMQ node of its own
/// (<c>infra/local/rabbit-cluster.sh</c>, placement <c>netns</c>: node N listens on server N's address, the three
/// clustered, the lanes quorum queues with a member on every node) and, per test, a worker process. PostgreSQL is a
/// private server on the bridge, as in <see cref="MultiHostFixture"/>. Every component gets all three node addresses
/// (<c>amqp://user:pass@host1:5672,host2:5672,host3:5672/fleet</c>) and <c>RabbitMq:QueueType=quorum</c>. Cutting a
/// server cuts its worker and its broker node together, as the loss of a real server would.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public const int NodeCount = 3;

    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromMinutes(5);

    private readonly IMessageSink _sink;
    private readonly FixtureLog _log;
    private readonly List<(SimulatedHost Host, WorkerProcess Process)> _workers = [];
    private SimulatedNetwork? _network;
    private FleetServersFixture? _servers;
    private Dictionary<string, string> _cluster = [];

    public ClusterFixture(IMessageSink sink)
    {
        _sink = sink;
        _log = new FixtureLog(sink);
    }

    public IReadOnlyList<SimulatedHost> Hosts => Network.Hosts;

    /// <summary>The test database, as this process reaches it (127.0.0.1).</summary>
    public string PostgresConnectionString { get; private set; } = "";

    public NpgsqlDataSource DataSource { get; private set; } = null!;

    /// <summary>A producer in this process, given every node (the administrator's login).</summary>
    public FleetClient Client { get; private set; } = null!;

    /// <summary>How long starting the three nodes, joining them and loading the lanes took.</summary>
    public TimeSpan ClusterStartup { get; private set; }

    private SimulatedNetwork Network => _network ?? throw new InvalidOperationException("The fixture is not initialised.");

    private FleetServersFixture Servers => _servers ?? throw new InvalidOperationException("The fixture is not initialised.");

    public async Task InitializeAsync()
    {
        try
        {
            _network = await SimulatedNetwork.CreateAsync(NodeCount, _log);
            _servers = new FleetServersFixture(_sink, new ExtraListenAddress(_network.BridgeAddress, _network.Subnet));
            await _servers.InitializeAsync();

            var builder = new NpgsqlConnectionStringBuilder(_servers.PostgresConnectionString);
            await using (var admin = NpgsqlDataSource.Create(builder.ConnectionString))
            {
                await using var create = admin.CreateCommand("CREATE DATABASE fleet_cluster");
                await create.ExecuteNonQueryAsync();
            }

            builder.Database = "fleet_cluster";
            PostgresConnectionString = builder.ConnectionString;
            DataSource = NpgsqlDataSource.Create(PostgresConnectionString);
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(DataSource);
            await using (var db = new FleetDbContext(options.Options))
            {
                await db.Database.MigrateAsync();
            }

            var started = DateTime.UtcNow;
            await RunClusterScriptAsync("start", NodeCount.ToString(CultureInfo.InvariantCulture));
            ClusterStartup = DateTime.UtcNow - started;
            _cluster = ReadClusterEnv();
            _log.Info($"RabbitMQ cluster of {NodeCount} up in {ClusterStartup.TotalSeconds:0} s: {_cluster["RABBIT_CLUSTER_HOSTS"]}");

            Client = new FleetClient(new FleetClientOptions
            {
                PostgresConnectionString = PostgresConnectionString,
                RabbitMqUri = _cluster["RABBIT_CLUSTER_AMQP_URL"],
                QueueType = BrokerQueueType.Quorum,
            });
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>Node <paramref name="node"/>'s Erlang node name (<c>fleet@address</c> of its server).</summary>
    public string NodeName(int node) => $"fleet@{Hosts[node - 1].Address}";

    /// <summary>
    /// A worker on <paramref name="host"/>: PostgreSQL at the bridge address, every broker node (its own server's
    /// first), quorum lanes, and the given AMQP heartbeat so that a node that went silent is left within seconds.
    /// </summary>
    public WorkerProcess StartWorker(SimulatedHost host, int ioConcurrency, int amqpHeartbeatSeconds = 5)
    {
        ArgumentNullException.ThrowIfNull(host);
        var logins = Servers.Logins;
        var postgres = new NpgsqlConnectionStringBuilder(logins?.Worker.Postgres(PostgresConnectionString) ?? PostgresConnectionString)
        {
            Host = Network.BridgeAddress.ToString(),
            SslMode = SslMode.Disable,
        };
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = postgres.ConnectionString,
            ["ConnectionStrings:rabbitmq"] = string.Create(CultureInfo.InvariantCulture, $"{WorkerAmqpUrl(host)}?heartbeat={amqpHeartbeatSeconds}"),
            [QueueTopology.QueueTypeKey] = "quorum",
            ["Worker:HostName"] = host.Name,
            ["Worker:CpuConcurrency"] = "1",
            ["Worker:IoConcurrency"] = ioConcurrency.ToString(CultureInfo.InvariantCulture),
            ["Worker:HeartbeatSeconds"] = "1",
            ["Worker:DrainSeconds"] = "2",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        var process = WorkerProcess.Start(settings, host.Namespace);
        lock (_workers)
        {
            _workers.Add((host, process));
        }

        _log.Info($"worker pid {process.Pid} started on {host.Name} ({host.Address}), I/O lane {ioConcurrency}, AMQP heartbeat {amqpHeartbeatSeconds} s");
        return process;
    }

    /// <summary>The worker login's URL with every node, <paramref name="host"/>'s own node first.</summary>
    private string WorkerAmqpUrl(SimulatedHost host)
    {
        var url = _cluster["RABBIT_CLUSTER_WORKER_AMQP_URL"];
        var at = url.LastIndexOf('@');
        var slash = url.IndexOf('/', at);
        var nodes = url[(at + 1)..slash].Split(',');
        var own = nodes.Single(n => n.StartsWith(host.Address + ":", StringComparison.Ordinal));
        return url[..(at + 1)] + string.Join(',', nodes.Where(n => n != own).Prepend(own)) + url[slash..];
    }

    /// <summary>Throws with the worker's output if one of the workers exited.</summary>
    public void AssertWorkersAlive()
    {
        lock (_workers)
        {
            var dead = _workers.FirstOrDefault(w => w.Process.HasExited);
            if (dead.Process is not null)
            {
                Assert.Fail($"The worker on {dead.Host.Name} exited:{Environment.NewLine}{dead.Process.Output}");
            }
        }
    }

    /// <summary>The output of the worker on <paramref name="host"/>, for a failure message.</summary>
    public string WorkerOutput(SimulatedHost host)
    {
        lock (_workers)
        {
            return string.Join(Environment.NewLine, _workers.Where(w => w.Host == host).Select(w => w.Process.Output));
        }
    }

    /// <summary>SIGKILL to node <paramref name="node"/>'s Erlang VM (its data stays).</summary>
    public Task KillNodeAsync(int node) => RunClusterScriptAsync("kill", node.ToString(CultureInfo.InvariantCulture));

    /// <summary>Starts node <paramref name="node"/> again on its data: it rejoins the cluster.</summary>
    public Task RestartNodeAsync(int node) => RunClusterScriptAsync("restart", node.ToString(CultureInfo.InvariantCulture));

    /// <summary>True when every quorum queue of vhost fleet has all three members online (<c>rabbit-cluster.sh members</c>).</summary>
    public async Task<bool> AllMembersOnlineAsync() =>
        (await ProcessTools.RunAsync(ClusterScript, ["members"], ScriptTimeout, ClusterEnvironment()).ConfigureAwait(false)).ExitCode == 0;

    /// <summary>What <c>rabbit-cluster.sh members</c> says: the quorum queues lacking members online, for a failure message.</summary>
    public async Task<string> MembersReportAsync() =>
        (await ProcessTools.RunAsync(ClusterScript, ["members"], ScriptTimeout, ClusterEnvironment()).ConfigureAwait(false)).Output.Trim();

    /// <summary>The queues as a running node sees them: type, leader, members, messages (<c>rabbit-cluster.sh queues</c>).</summary>
    public async Task<string> QueuesAsync() =>
        (await ProcessTools.RunAsync(ClusterScript, ["queues"], ScriptTimeout, ClusterEnvironment()).ConfigureAwait(false)).Output.Trim();

    /// <summary>Each node's state and the cluster as a running node sees it (<c>rabbit-cluster.sh status</c>), for a failure message.</summary>
    public async Task<string> StatusAsync() =>
        (await ProcessTools.RunAsync(ClusterScript, ["status"], ScriptTimeout, ClusterEnvironment()).ConfigureAwait(false)).Output.Trim();

    public Task CutAsync(SimulatedHost host) => Network.CutAsync(host);

    public Task HealAsync(SimulatedHost host) => Network.HealAsync(host);

    /// <summary>
    /// The workers' broker connections (management API of the first node that answers): the server the worker runs
    /// on (its connection name starts with <c>fleet-worker server-N:</c>) and the node the connection is on.
    /// </summary>
    public async Task<IReadOnlyList<(string Host, string Node)>> WorkerConnectionsAsync(IEnumerable<int> askNodes)
    {
        ArgumentNullException.ThrowIfNull(askNodes);
        foreach (var node in askNodes)
        {
            try
            {
                using var http = ManagementClient(node);
                using var document = JsonDocument.Parse(await http.GetStringAsync(new Uri("api/connections?columns=client_properties,node", UriKind.Relative)));
                return [.. document.RootElement.EnumerateArray()
                    .Select(c => (Name: c.TryGetProperty("client_properties", out var p) && p.TryGetProperty("connection_name", out var n) ? n.GetString() ?? "" : "",
                                  Node: c.GetProperty("node").GetString() ?? ""))
                    .Where(c => c.Name.StartsWith("fleet-worker ", StringComparison.Ordinal))
                    .Select(c => (c.Name["fleet-worker ".Length..].Split(':')[0], c.Node))];
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
            {
                _log.Info($"management API of node {node} did not answer ({exception.Message})");
            }
        }

        return [];
    }

    /// <summary>Ready messages and consumers of <paramref name="queue"/> (management API of node <paramref name="node"/>).</summary>
    public async Task<(long Messages, long Consumers)> QueueAsync(int node, string queue)
    {
        using var http = ManagementClient(node);
        using var document = JsonDocument.Parse(await http.GetStringAsync(new Uri($"api/queues/fleet/{queue}", UriKind.Relative)));
        var root = document.RootElement;
        return (root.TryGetProperty("messages", out var m) ? m.GetInt64() : 0, root.TryGetProperty("consumers", out var c) ? c.GetInt64() : 0);
    }

    /// <summary>Stops every worker (SIGTERM, then SIGKILL), heals every link, restarts stopped nodes, empties the tables.</summary>
    public async Task ResetAsync()
    {
        await StopWorkersAsync();
        foreach (var host in Hosts)
        {
            await HealAsync(host);
        }

        for (var node = 1; node <= NodeCount; node++)
        {
            await RestartNodeAsync(node);
        }

        foreach (var queue in new[] { Fleet.Contracts.TaskQueues.Cpu, Fleet.Contracts.TaskQueues.Io })
        {
            await RunClusterScriptAsync("ctl", "1", "purge_queue", "-p", "fleet", queue);
        }

        await using var command = DataSource.CreateCommand("TRUNCATE fleet.tasks, fleet.task_attempts, fleet.workers");
        await command.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        await StopWorkersAsync();
        if (Client is not null)
        {
            await Client.DisposeAsync();
        }

        if (DataSource is not null)
        {
            await DataSource.DisposeAsync();
        }

        if (_servers is not null)
        {
            if (_servers.WorkDirectory is not null)
            {
                var stopped = await ProcessTools.RunAsync(ClusterScript, ["stop"], ScriptTimeout, ClusterEnvironment());
                _log.Info($"rabbit-cluster.sh stop: exit {stopped.ExitCode}");
            }

            await _servers.DisposeAsync();
        }

        if (_network is not null)
        {
            // Also ends whatever still runs inside the servers (a node that did not stop).
            await _network.DisposeAsync();
        }
    }

    private HttpClient ManagementClient(int node)
    {
        var admin = new Uri(_cluster["RABBIT_CLUSTER_MANAGEMENT_URL"]);
        var uri = new UriBuilder(admin) { Host = Hosts[node - 1].Address.ToString() }.Uri;
        return LocalServers.CreateManagementClient(uri);
    }

    private static string ClusterScript => Repository.PathTo("infra", "local", "rabbit-cluster.sh");

    private Dictionary<string, string> ClusterEnvironment() => new()
    {
        ["FLEET_HOME"] = Servers.WorkDirectory ?? throw new InvalidOperationException("The cluster needs private servers (a work directory)."),
        ["RABBIT_CLUSTER_PLACEMENT"] = "netns",
        ["RABBIT_CLUSTER_QUEUE_TYPE"] = "quorum",
        ["NETSIM_OWNER"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
    };

    private async Task RunClusterScriptAsync(params string[] arguments)
    {
        var result = await ProcessTools.RunAsync(ClusterScript, arguments, ScriptTimeout, ClusterEnvironment()).ConfigureAwait(false);
        foreach (var line in result.Output.Split('\n').Where(l => l.StartsWith("rabbit-cluster:", StringComparison.Ordinal)))
        {
            _log.Info(line);
        }

        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"infra/local/rabbit-cluster.sh {string.Join(' ', arguments)} exited with {result.ExitCode}:{Environment.NewLine}{result.Output}");
        }
    }

    /// <summary>The cluster's settings file (<c>KEY='value'</c> lines) that <c>rabbit-cluster.sh start</c> wrote.</summary>
    private Dictionary<string, string> ReadClusterEnv()
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines(Path.Combine(Servers.WorkDirectory!, "rabbit-cluster", "env")))
        {
            var equals = line.IndexOf('=', StringComparison.Ordinal);
            if (line.StartsWith('#') || equals <= 0)
            {
                continue;
            }

            var value = line[(equals + 1)..];
            values[line[..equals]] = value.Length >= 2 && value[0] == '\'' && value[^1] == '\'' ? value[1..^1] : value;
        }

        return values;
    }

    private async Task StopWorkersAsync()
    {
        List<(SimulatedHost Host, WorkerProcess Process)> workers;
        lock (_workers)
        {
            workers = [.. _workers];
            _workers.Clear();
        }

        await Task.WhenAll(workers.Select(async w =>
        {
            if (!w.Process.HasExited)
            {
                try
                {
                    await w.Process.TerminateAsync(TimeSpan.FromSeconds(30));
                }
                catch (OperationCanceledException)
                {
                    _log.Info($"worker {w.Process.Pid} on {w.Host.Name} did not stop within 30 s of SIGTERM; killing it");
                }
            }

            await w.Process.DisposeAsync();
        }));
    }
}
