using System.Globalization;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.MultiHost;

/// <summary>
/// The multi-host tests run alone (no other collection at the same time): they measure shares and rates of CPU
/// work, and they load both cores.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MultiHostCollection : ICollectionFixture<MultiHostFixture>
{
    public const string Name = "multi-host";
}

/// <summary>
/// A fleet of simulated servers: <see cref="HostCount"/> network namespaces with their own addresses
/// (<see cref="SimulatedNetwork"/>), and private PostgreSQL and RabbitMQ servers of their own that listen on the
/// bridge address as well as on 127.0.0.1. Workers are real <c>Fleet.Worker</c> processes started inside the
/// hosts; the tests submit and read from this process through 127.0.0.1.
/// </summary>
public sealed class MultiHostFixture : IAsyncLifetime
{
    public const int HostCount = 3;

    private readonly IMessageSink _sink;
    private readonly FixtureLog _log;
    private readonly List<(SimulatedHost Host, WorkerProcess Process)> _workers = [];
    private SimulatedNetwork? _network;
    private FleetServersFixture? _servers;

    public MultiHostFixture(IMessageSink sink)
    {
        _sink = sink;
        _log = new FixtureLog(sink);
    }

    public IReadOnlyList<SimulatedHost> Hosts => Network.Hosts;

    public FleetServersFixture Servers => _servers ?? throw new InvalidOperationException("The fixture is not initialised.");

    /// <summary>The test database, as this process reaches it (127.0.0.1).</summary>
    public string PostgresConnectionString { get; private set; } = "";

    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public FleetClient Client { get; private set; } = null!;

    private SimulatedNetwork Network => _network ?? throw new InvalidOperationException("The fixture is not initialised.");

    public async Task InitializeAsync()
    {
        try
        {
            _network = await SimulatedNetwork.CreateAsync(HostCount, _log);
            _servers = new FleetServersFixture(_sink, new ExtraListenAddress(_network.BridgeAddress, _network.Subnet));
            await _servers.InitializeAsync();

            var builder = new NpgsqlConnectionStringBuilder(_servers.PostgresConnectionString);
            await using (var admin = NpgsqlDataSource.Create(builder.ConnectionString))
            {
                await using var create = admin.CreateCommand("CREATE DATABASE fleet_multihost");
                await create.ExecuteNonQueryAsync();
            }

            builder.Database = "fleet_multihost";
            PostgresConnectionString = builder.ConnectionString;
            DataSource = NpgsqlDataSource.Create(PostgresConnectionString);
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(DataSource);
            await using (var db = new FleetDbContext(options.Options))
            {
                await db.Database.MigrateAsync();
            }

            Client = new FleetClient(new FleetClientOptions { PostgresConnectionString = PostgresConnectionString, RabbitMqUri = _servers.RabbitMqUri.ToString() });
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// The settings of a worker on <paramref name="host"/>: the servers at the bridge address, the host's name, and
    /// the AMQP heartbeat (seconds) its connections request.
    /// </summary>
    public Dictionary<string, string?> WorkerSettings(SimulatedHost host, int cpuConcurrency, int ioConcurrency, int amqpHeartbeatSeconds)
    {
        ArgumentNullException.ThrowIfNull(host);
        var bridge = Network.BridgeAddress.ToString();
        // The workers' own logins (fleet_worker), as everywhere else; another host as far as the worker can tell, so
        // it says that the private bridge runs without TLS.
        var logins = Servers.Logins;
        var postgres = new NpgsqlConnectionStringBuilder(logins?.Worker.Postgres(PostgresConnectionString) ?? PostgresConnectionString) { Host = bridge, SslMode = SslMode.Disable };
        var rabbitMq = new UriBuilder(logins?.Worker.RabbitMqUri ?? Servers.RabbitMqUri)
        {
            Host = bridge,
            Query = string.Create(CultureInfo.InvariantCulture, $"heartbeat={amqpHeartbeatSeconds}"),
        };
        return new()
        {
            ["ConnectionStrings:fleetdb"] = postgres.ConnectionString,
            ["ConnectionStrings:rabbitmq"] = rabbitMq.Uri.ToString(),
            ["Worker:HostName"] = host.Name,
            ["Worker:CpuConcurrency"] = cpuConcurrency.ToString(CultureInfo.InvariantCulture),
            ["Worker:IoConcurrency"] = ioConcurrency.ToString(CultureInfo.InvariantCulture),
            ["Worker:HeartbeatSeconds"] = "1",
            ["Worker:DrainSeconds"] = "2",
            ["Logging:LogLevel:Default"] = "Warning",
        };
    }

    /// <summary>Starts a worker process inside <paramref name="host"/>; it is stopped by <see cref="ResetAsync"/> and at the end.</summary>
    public WorkerProcess StartWorker(SimulatedHost host, int cpuConcurrency, int ioConcurrency = 16, int amqpHeartbeatSeconds = 10)
    {
        var process = WorkerProcess.Start(WorkerSettings(host, cpuConcurrency, ioConcurrency, amqpHeartbeatSeconds), host.Namespace);
        lock (_workers)
        {
            _workers.Add((host, process));
        }

        _log.Info($"worker pid {process.Pid} started on {host.Name} ({host.Address}), CPU lane {cpuConcurrency}, I/O lane {ioConcurrency}, AMQP heartbeat {amqpHeartbeatSeconds} s");
        return process;
    }

    /// <summary>
    /// The real API in this process (127.0.0.1, free port) against this fleet's database and broker: for
    /// measurements that read what the API reports about the simulated servers (workers, stats).
    /// </summary>
    public Task<ApiHost> StartApiAsync(IDictionary<string, string?>? overrides = null) =>
        ApiHost.StartAsync(
            Servers.Logins is { Api: var api }
                ? ApiHost.DefaultSettings(api.Postgres(PostgresConnectionString), api.RabbitMqUri.ToString(), api.ManagementUri)
                : ApiHost.DefaultSettings(PostgresConnectionString, Servers.RabbitMqUri.ToString(), Servers.RabbitMqManagementUri),
            overrides);

    public Task CutAsync(SimulatedHost host) => Network.CutAsync(host);

    public Task HealAsync(SimulatedHost host) => Network.HealAsync(host);

    /// <summary>
    /// Waits until <paramref name="hosts"/> each have a running worker in <c>fleet.workers</c> and as many
    /// consumers are on each lane's queue, so that a run starts with every host taking work.
    /// </summary>
    public async Task WaitForWorkersAsync(IReadOnlyCollection<SimulatedHost> hosts, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(hosts);
        var names = hosts.Select(h => h.Name).ToArray();
        var deadline = DateTime.UtcNow + timeout;
        long registered = 0;
        uint consumers = 0;
        while (DateTime.UtcNow < deadline)
        {
            await using (var command = DataSource.CreateCommand("SELECT count(DISTINCT host) FROM fleet.workers WHERE state = 'running' AND host = ANY(@hosts)"))
            {
                command.Parameters.AddWithValue("hosts", names);
                registered = (long)(await command.ExecuteScalarAsync())!;
            }

            consumers = Math.Min((await QueueAsync(TaskQueues.Cpu)).Consumers, (await QueueAsync(TaskQueues.Io)).Consumers);
            if (registered == names.Length && consumers == names.Length)
            {
                return;
            }

            lock (_workers)
            {
                var dead = _workers.FirstOrDefault(w => w.Process.HasExited);
                if (dead.Process is not null)
                {
                    Assert.Fail($"The worker on {dead.Host.Name} exited:{Environment.NewLine}{dead.Process.Output}");
                }
            }

            await Task.Delay(200);
        }

        Assert.Fail($"Within {timeout.TotalSeconds:0} s only {registered} of {names.Length} hosts registered a running worker and {consumers} consumers are on both queues.");
    }

    /// <summary>
    /// Messages ready in <paramref name="queue"/> and consumers on it, straight from the broker (AMQP passive declare):
    /// a consumer is gone the moment the broker closes its connection, unlike the management API's sampled lists.
    /// </summary>
    public async Task<(uint Ready, uint Consumers)> QueueAsync(string queue)
    {
        await using var connection = await new ConnectionFactory { Uri = Servers.RabbitMqUri }.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            var declared = await channel.QueueDeclarePassiveAsync(queue);
            return (declared.MessageCount, declared.ConsumerCount);
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return (0, 0); // not declared yet: no worker has started consuming
        }
    }

    /// <summary>The broker's connections (management API, whose lists lag by up to its 5 s statistics interval): client-provided name and the peer's address.</summary>
    public async Task<IReadOnlyList<(string Name, string PeerHost)>> BrokerConnectionsAsync()
    {
        using var http = Servers.CreateRabbitMqManagementClient();
        using var document = JsonDocument.Parse(await http.GetStringAsync(new Uri("api/connections?columns=client_properties,peer_host", UriKind.Relative)));
        return [.. document.RootElement.EnumerateArray().Select(c => (
            c.TryGetProperty("client_properties", out var properties) && properties.TryGetProperty("connection_name", out var name) ? name.GetString() ?? "" : "",
            c.GetProperty("peer_host").GetString() ?? ""))];
    }

    /// <summary>Consumers on <paramref name="queue"/> (management API): their connection's name and peer, and their prefetch.</summary>
    public async Task<IReadOnlyList<(string Connection, string PeerHost, int Prefetch)>> QueueConsumersAsync(string queue)
    {
        using var http = Servers.CreateRabbitMqManagementClient();
        using var document = JsonDocument.Parse(await http.GetStringAsync(new Uri($"api/queues/{LocalServers.VirtualHost}/{queue}", UriKind.Relative)));
        return [.. document.RootElement.GetProperty("consumer_details").EnumerateArray().Select(c => (
            c.GetProperty("channel_details").GetProperty("connection_name").GetString() ?? "",
            c.GetProperty("channel_details").GetProperty("peer_host").GetString() ?? "",
            c.GetProperty("prefetch_count").GetInt32()))];
    }

    /// <summary>Stops every worker (SIGTERM, then SIGKILL), heals every link, empties tables and queues.</summary>
    public async Task ResetAsync()
    {
        await StopWorkersAsync();
        foreach (var host in Hosts)
        {
            await HealAsync(host);
        }

        await FleetFixture.ClearAsync(DataSource, Servers.RabbitMqUri);
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
            await _servers.DisposeAsync();
        }

        if (_network is not null)
        {
            await _network.DisposeAsync();
        }
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
