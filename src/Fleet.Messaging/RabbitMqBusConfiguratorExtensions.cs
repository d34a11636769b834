using System.Net.Security;
using System.Security.Authentication;
using Fleet.Client;
using Fleet.Client.Tls;
using MassTransit;
using Microsoft.Extensions.Configuration;

namespace Fleet.Messaging;

public static class RabbitMqBusConfiguratorExtensions
{
    /// <summary>
    /// The broker address from <c>ConnectionStrings:rabbitmq</c>, with the certificate check of the <c>Tls</c> section and
    /// the queue type of <c>RabbitMq:QueueType</c>; fails naming both the config path and the environment variable when it is missing.
    /// </summary>
    public static RabbitMqAddress GetRabbitMqAddress(this IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var value = configuration.GetConnectionString("rabbitmq");
        return string.IsNullOrWhiteSpace(value)
            ? throw new InvalidOperationException(
                "Missing connection string 'ConnectionStrings:rabbitmq' (environment variable ConnectionStrings__rabbitmq). " +
                "Run `make up` and `. .fleet/env`, or set it yourself.")
            : RabbitMqAddress.Parse(value) with
            {
                Certificates = configuration.GetFleetTlsOptions().CreateRabbitMqValidator(),
                QueueType = QueueTopology.ParseQueueType(configuration[QueueTopology.QueueTypeKey]),
            };
    }

    /// <summary>The <c>Tls</c> section as it is now (validated at start by <see cref="TlsStartupExtensions.AddFleetTls"/>).</summary>
    public static FleetTlsOptions GetFleetTlsOptions(this IConfiguration configuration) =>
        configuration.GetSection(FleetTlsOptions.SectionName).Get<FleetTlsOptions>() ?? new FleetTlsOptions();

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
                // MassTransit's own default accepts RemoteCertificateChainErrors: any self-made certificate would do.
                // The same check as every other Fleet connection instead, and the OS's choice of TLS version (1.3
                // too, where MassTransit would pin 1.2).
                host.UseSsl(ssl =>
                {
                    ssl.ServerName = address.Host;
                    ssl.Protocol = SslProtocols.None;
                    ssl.EnforcePolicyErrors(SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable);
                    ssl.CertificateValidationCallback = address.Certificates.For(address.ServerDescription);
                });
            }
        });
    }
}
