using Fleet.Client;
using Fleet.Contracts;
using Fleet.Persistence;
using Fleet.ServiceDefaults;
using Fleet.Worker;
using Fleet.Worker.MessagePath;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Support;

[CollectionDefinition(Name)]
public sealed class FleetCollection : ICollectionFixture<FleetFixture>
{
    public const string Name = "fleet";
}

/// <summary>
/// Boots once per test run: the real servers (<see cref="FleetServersFixture"/>), a fresh database migrated with
/// the real migrations, an in-process worker host built exactly like <c>Fleet.Worker</c>'s Program, and a
/// <see cref="FleetClient"/>. Tests reset state before they run (<see cref="ResetAsync"/>), not after.
/// </summary>
public sealed class FleetFixture : IAsyncLifetime
{
    private readonly FleetServersFixture _servers;
    private IHost? _worker;

    public FleetFixture(IMessageSink sink)
    {
        _servers = new FleetServersFixture(sink);
    }

    public FleetServersFixture Servers => _servers;

    public string PostgresConnectionString { get; private set; } = "";

    public string AmqpUri => _servers.RabbitMqUri.ToString();

    /// <summary>
    /// The database as the workers log in to it: as <c>fleet_worker</c> on owned servers, so that every test that runs
    /// a worker also shows that role's grants are enough (the test's own setup and checks keep the superuser).
    /// </summary>
    public string WorkerPostgresConnectionString => _servers.Logins?.Worker.Postgres(PostgresConnectionString) ?? PostgresConnectionString;

    /// <summary>The broker as the workers log in to it (<c>fleet_worker</c> on owned servers).</summary>
    public string WorkerAmqpUri => (_servers.Logins?.Worker.RabbitMqUri ?? _servers.RabbitMqUri).ToString();

    /// <summary>The database as the API logs in to it (<c>fleet_api</c> on owned servers).</summary>
    public string ApiPostgresConnectionString => _servers.Logins?.Api.Postgres(PostgresConnectionString) ?? PostgresConnectionString;

    /// <summary>The broker as the API logs in to it (<c>fleet_api</c> on owned servers).</summary>
    public string ApiAmqpUri => (_servers.Logins?.Api.RabbitMqUri ?? _servers.RabbitMqUri).ToString();

    /// <summary>The management API as the API logs in to it (<c>fleet_api</c>, tag <c>management</c>, on owned servers).</summary>
    public Uri? ApiManagementUri => _servers.Logins?.Api.ManagementUri ?? _servers.RabbitMqManagementUri;

    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public FleetClient Client { get; private set; } = null!;

    /// <summary>The in-process worker's services (counters, identity), or null while it is stopped.</summary>
    public IServiceProvider? WorkerServices => _worker?.Services;

    /// <summary>Where <c>http-get</c> tests serve files; the in-process worker allows this host.</summary>
    public const string AllowedHttpHost = "127.0.0.1";

    public async Task InitializeAsync()
    {
        await _servers.InitializeAsync();
        var admin = new NpgsqlConnectionStringBuilder(_servers.PostgresConnectionString);
        var database = $"fleet_it_{Guid.NewGuid():N}"[..20];
        var owner = _servers.Logins?.Owner;
        await using (var adminSource = NpgsqlDataSource.Create(admin.ConnectionString))
        {
            await using var create = adminSource.CreateCommand($"CREATE DATABASE {database}" + (owner is null ? "" : $" OWNER {owner.PostgresUser}"));
            await create.ExecuteNonQueryAsync();
        }

        admin.Database = database;
        PostgresConnectionString = admin.ConnectionString;
        DataSource = NpgsqlDataSource.Create(PostgresConnectionString);

        // Migrated by the owner role, as `fleet migrate` is: its grants to the components' roles are the ones they get.
        await using (var migrator = NpgsqlDataSource.Create(owner?.Postgres(PostgresConnectionString) ?? PostgresConnectionString))
        {
            var options = new DbContextOptionsBuilder<FleetDbContext>();
            options.UseFleetNpgsql(migrator);
            await using var db = new FleetDbContext(options.Options);
            await db.Database.MigrateAsync();
        }

        Client = new FleetClient(new FleetClientOptions { PostgresConnectionString = PostgresConnectionString, RabbitMqUri = AmqpUri });
        await StartWorkerAsync();
    }

    /// <summary>The settings a worker process of this run gets, as environment-style keys.</summary>
    public Dictionary<string, string?> WorkerSettings(string hostName, int cpuConcurrency) => new()
    {
        ["ConnectionStrings:fleetdb"] = WorkerPostgresConnectionString,
        ["ConnectionStrings:rabbitmq"] = WorkerAmqpUri,
        ["Worker:HostName"] = hostName,
        ["Worker:CpuConcurrency"] = cpuConcurrency.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Worker:IoConcurrency"] = "64",
        ["Worker:HeartbeatSeconds"] = "1",
        ["Worker:DrainSeconds"] = "10",
        ["Worker:HttpGet:AllowedHosts:0"] = AllowedHttpHost,
        ["Worker:FaultInjection"] = "true",
        ["Worker:HardStopGraceSeconds"] = "1",
        ["Worker:TypeTimeoutSeconds:fault-hang"] = "2",

        // fault-hang tasks of one test may still sleep in abandoned threads during the next: a worker of the default
        // bound (one per CPU-lane thread) would find its lane exhausted and stop itself.
        ["Worker:MaxAbandonedThreads"] = "16",
        ["Worker:RetryBaseSeconds"] = "0.5",
        ["Logging:LogLevel:Default"] = "Warning",
    };

    public async Task StartWorkerAsync()
    {
        if (_worker is not null)
        {
            return;
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var settings = WorkerSettings("in-process", Environment.ProcessorCount);

        // The tests run the in-process worker's reconciler passes themselves (ReconcilerTests), when they choose.
        settings["Worker:ReconcileIntervalSeconds"] = "0";
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddServiceDefaults();
        builder.AddFleetWorker();
        var host = builder.Build();
        await host.StartAsync();
        _worker = host;
    }

    public async Task StopWorkerAsync()
    {
        if (_worker is null)
        {
            return;
        }

        await _worker.StopAsync();
        _worker.Dispose();
        _worker = null;
    }

    /// <summary>Empties the tables and the queues so that each test starts from nothing, with the worker running.</summary>
    public async Task ResetAsync()
    {
        // Empty first, start the worker last: a message a previous test left behind (a fault type that kills its
        // process, say) must never reach the in-process worker, which lives in the test host.
        await ClearAsync(DataSource, _servers.RabbitMqUri);
        await StartWorkerAsync();
    }

    /// <summary>Empties the fleet tables and the task queues (with their <c>_error</c> queues).</summary>
    public static async Task ClearAsync(NpgsqlDataSource dataSource, Uri rabbitMqUri)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using (var truncate = dataSource.CreateCommand("TRUNCATE fleet.tasks, fleet.task_attempts, fleet.workers, fleet.schedules, fleet.limits, fleet.queue_pauses, fleet.batch_callbacks, fleet.idempotency_keys"))
        {
            await truncate.ExecuteNonQueryAsync();
        }

        // Retries and delayed tasks wait in fleet.tasks, which is emptied above: nothing of a previous test waits in
        // the broker but the lanes and their error queues.
        await using var connection = await new ConnectionFactory { Uri = rabbitMqUri }.CreateConnectionAsync();
        foreach (var queue in TaskQueues.All.SelectMany(q => new[] { q, $"{q}_error", TaskQueues.DispatchQueueOf(q) }))
        {
            // A passive declare of a missing queue closes its channel, so each queue gets its own.
            await using var channel = await connection.CreateChannelAsync();
            try
            {
                await channel.QueueDeclarePassiveAsync(queue);
                await channel.QueuePurgeAsync(queue);
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
                // The queue does not exist yet: nothing to purge.
            }
        }
    }

    /// <summary>
    /// After PostgreSQL restarts, every pooled connection of this run is dead: drop them (the test's data source)
    /// and replace the client, whose pool would otherwise fail its next command.
    /// </summary>
    public async Task ReconnectAfterDatabaseRestartAsync()
    {
        DataSource.Clear();
        await Client.DisposeAsync();
        Client = new FleetClient(new FleetClientOptions { PostgresConnectionString = PostgresConnectionString, RabbitMqUri = AmqpUri });
    }

    public Task<IConnection> OpenRabbitAsync() => new ConnectionFactory { Uri = _servers.RabbitMqUri }.CreateConnectionAsync();

    public async Task DisposeAsync()
    {
        await StopWorkerAsync();
        if (Client is not null)
        {
            await Client.DisposeAsync();
        }

        if (DataSource is not null)
        {
            await DataSource.DisposeAsync();
        }

        await _servers.DisposeAsync();
    }
}
