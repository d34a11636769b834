using System.Globalization;
using System.Security.Cryptography;
using Docker.DotNet.Models;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// PostgreSQL and RabbitMQ as Testcontainers, pinned images. Each host port is chosen up front (free port) and
/// bound to 127.0.0.1 when the engine is local, so a stopped and restarted container keeps its address.
/// Testcontainers has no "kill": <see cref="IOwnedServer.KillAsync"/> is a docker stop here (PostgreSQL's image
/// stops with SIGINT, a fast shutdown; RabbitMQ's with SIGTERM; docker sends SIGKILL after its timeout).
/// Ryuk removes the containers if the test process dies.
/// </summary>
internal static class ContainerImages
{
    public const string Postgres = "postgres:15-alpine";
    public const string RabbitMq = "rabbitmq:3.10-management";

    public static void BindToLoopback(CreateContainerParameters parameters)
    {
        if (parameters.HostConfig?.PortBindings is null)
        {
            return;
        }

        foreach (var bindings in parameters.HostConfig.PortBindings.Values)
        {
            foreach (var binding in bindings)
            {
                binding.HostIP = "127.0.0.1";
            }
        }
    }
}

internal sealed class ContainerPostgresServer : IOwnedServer
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private readonly PostgreSqlContainer _container;

    public ContainerPostgresServer(bool localEngine)
    {
        Port = ProcessTools.GetFreeLoopbackPort();
        var builder = new PostgreSqlBuilder(ContainerImages.Postgres)
            .WithDatabase(LocalServers.DatabaseName)
            .WithUsername("postgres")
            .WithPassword(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12)))
            .WithPortBinding(Port, 5432);
        if (localEngine)
        {
            builder = builder.WithCreateParameterModifier(ContainerImages.BindToLoopback);
        }

        _container = builder.Build();
    }

    public string Name => "PostgreSQL container";

    public int Port { get; }

    public string ConnectionString => _container.GetConnectionString();

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _container.StartAsync(cancellationToken).ConfigureAwait(false);
        await Readiness.WaitForPostgresAsync(ConnectionString, ReadyTimeout, cancellationToken).ConfigureAwait(false);
    }

    public Task StopAsync(CancellationToken cancellationToken) => _container.StopAsync(cancellationToken);

    public Task KillAsync(CancellationToken cancellationToken) => _container.StopAsync(cancellationToken);

    public Task RestartStoppedAsync(CancellationToken cancellationToken) => StartAsync(cancellationToken);

    public ValueTask DisposeAsync() => _container.DisposeAsync();

    public void EmergencyStop()
    {
        // Ryuk (Testcontainers' resource reaper) removes the container when this process's session ends.
    }
}

internal sealed class ContainerRabbitMqServer : IOwnedServer
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);
    private readonly RabbitMqContainer _container;
    private readonly string _password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    public ContainerRabbitMqServer(bool localEngine)
    {
        AmqpPort = ProcessTools.GetFreeLoopbackPort();
        ManagementPort = ProcessTools.GetFreeLoopbackPort();
        var builder = new RabbitMqBuilder(ContainerImages.RabbitMq)
            .WithUsername(LocalServers.User)
            .WithPassword(_password)
            .WithEnvironment("RABBITMQ_DEFAULT_VHOST", LocalServers.VirtualHost)
            .WithPortBinding(AmqpPort, 5672)
            .WithPortBinding(ManagementPort, 15672);
        if (localEngine)
        {
            builder = builder.WithCreateParameterModifier(ContainerImages.BindToLoopback);
        }

        _container = builder.Build();
    }

    public string Name => "RabbitMQ container";

    public int AmqpPort { get; }

    public int ManagementPort { get; }

    public Uri AmqpUri => new(string.Create(
        CultureInfo.InvariantCulture,
        $"amqp://{LocalServers.User}:{_password}@{_container.Hostname}:{AmqpPort}/{LocalServers.VirtualHost}"));

    public Uri ManagementUri => new(string.Create(
        CultureInfo.InvariantCulture,
        $"http://{LocalServers.User}:{_password}@{_container.Hostname}:{ManagementPort}/"));

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _container.StartAsync(cancellationToken).ConfigureAwait(false);

        // After a restart the old "startup complete" log line is still there: check for real.
        await Readiness.WaitForAmqpAsync(AmqpUri, ReadyTimeout, cancellationToken).ConfigureAwait(false);
        await Readiness.WaitForManagementAsync(ManagementUri, ReadyTimeout, cancellationToken).ConfigureAwait(false);
    }

    public Task StopAsync(CancellationToken cancellationToken) => _container.StopAsync(cancellationToken);

    public Task KillAsync(CancellationToken cancellationToken) => _container.StopAsync(cancellationToken);

    public Task RestartStoppedAsync(CancellationToken cancellationToken) => StartAsync(cancellationToken);

    public ValueTask DisposeAsync() => _container.DisposeAsync();

    public void EmergencyStop()
    {
        // Ryuk removes the container.
    }
}
