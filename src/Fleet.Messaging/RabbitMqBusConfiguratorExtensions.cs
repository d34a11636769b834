using Fleet.Client;
using MassTransit;
using Microsoft.Extensions.Configuration;

namespace Fleet.Messaging;

public static class RabbitMqBusConfiguratorExtensions
{
    /// <summary>
    /// The broker address from <c>ConnectionStrings:rabbitmq</c>; fails naming both the config path and the
    /// environment variable when it is missing.
    /// </summary>
    public static RabbitMqAddress GetRabbitMqAddress(this IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var value = configuration.GetConnectionString("rabbitmq");
        return string.IsNullOrWhiteSpace(value)
            ? throw new InvalidOperationException(
                "Missing connection string 'ConnectionStrings:rabbitmq' (environment variable ConnectionStrings__rabbitmq). " +
                "Run `make up` and `. .fleet/env`, or set it yourself.")
            : RabbitMqAddress.Parse(value);
    }

    /// <summary>
    /// Connects the bus to the fleet's broker with the settings every Fleet connection shares (those of
    /// <see cref="RabbitMqAddress.CreateConnectionFactory"/>).
    /// </summary>
    public static void UseFleetHost(this IRabbitMqBusFactoryConfigurator configurator, RabbitMqAddress address, string connectionName)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(address);
        configurator.Host(address.Host, (ushort)address.Port, address.VirtualHost, connectionName, host =>
        {
            host.Username(address.UserName);
            host.Password(address.Password);

            // A cut-off peer is noticed within about two heartbeats instead of the TCP timeout (minutes).
            host.Heartbeat(address.Heartbeat);
            host.RequestedConnectionTimeout(address.ConnectionTimeout);
            if (address.UseTls)
            {
                host.UseSsl(ssl => ssl.ServerName = address.Host);
            }
        });
    }
}
