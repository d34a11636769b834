using MassTransit;

namespace Fleet.Client;

/// <summary>
/// Reads the pinned <c>ConnectionStrings__rabbitmq</c> form, <c>amqp[s]://user:pass@host:port/vhost</c>, and applies
/// it to a MassTransit RabbitMQ bus. Parsed here rather than left to the transport so that the user name,
/// password and vhost are decoded the way the RabbitMQ URI spec says (percent-encoding, "/" vhost as "%2F").
/// </summary>
public sealed record RabbitMqAddress(string Host, int Port, string VirtualHost, string UserName, string Password, bool UseTls)
{
    public static RabbitMqAddress Parse(string amqpUri)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(amqpUri);
        if (!Uri.TryCreate(amqpUri, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq"))
        {
            throw new FormatException("The RabbitMQ connection string must look like amqp://user:pass@host:5672/vhost.");
        }

        var tls = uri.Scheme == "amqps";
        var userInfo = uri.UserInfo.Split(':', 2);
        var user = userInfo[0].Length > 0 ? Uri.UnescapeDataString(userInfo[0]) : "guest";
        var password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : "guest";
        var path = uri.AbsolutePath.TrimStart('/');
        var vhost = path.Length == 0 ? "/" : Uri.UnescapeDataString(path);
        var port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 5671 : 5672) : uri.Port;
        return new RabbitMqAddress(uri.Host, port, vhost, user, password, tls);
    }

    /// <summary>
    /// A RabbitMQ.Client connection factory for this address, with the liveness settings every Fleet connection
    /// shares (the same as <see cref="RabbitMqBusConfiguratorExtensions.UseFleetHost"/>): a cut-off peer is noticed
    /// within two missed heartbeats instead of the TCP timeout (minutes).
    /// </summary>
    public RabbitMQ.Client.ConnectionFactory CreateConnectionFactory(string connectionName) => new()
    {
        HostName = Host,
        Port = Port,
        VirtualHost = VirtualHost,
        UserName = UserName,
        Password = Password,
        ClientProvidedName = connectionName,
        RequestedHeartbeat = TimeSpan.FromSeconds(10),
        RequestedConnectionTimeout = TimeSpan.FromSeconds(10),
        Ssl = new RabbitMQ.Client.SslOption { Enabled = UseTls, ServerName = Host },
    };

    /// <summary>The address without the password, for logs.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{UserName}:***@{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}";
}

public static class RabbitMqBusConfiguratorExtensions
{
    /// <summary>Connects the bus to the fleet's broker with the settings every Fleet process shares.</summary>
    public static void UseFleetHost(this IRabbitMqBusFactoryConfigurator configurator, RabbitMqAddress address, string connectionName)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(address);
        configurator.Host(address.Host, (ushort)address.Port, address.VirtualHost, connectionName, host =>
        {
            host.Username(address.UserName);
            host.Password(address.Password);

            // A cut-off peer is noticed within two missed heartbeats instead of the TCP timeout (minutes).
            host.Heartbeat(TimeSpan.FromSeconds(10));
            host.RequestedConnectionTimeout(TimeSpan.FromSeconds(10));
            if (address.UseTls)
            {
                host.UseSsl(ssl => ssl.ServerName = address.Host);
            }
        });
    }
}
