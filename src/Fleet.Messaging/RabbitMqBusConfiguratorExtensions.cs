using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Fleet.Client;
using Fleet.Client.Tls;
using MassTransit;
using MassTransit.RabbitMqTransport.Configuration;
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
            : RabbitMqAddress.Parse(value, "ConnectionStrings:rabbitmq (environment variable ConnectionStrings__rabbitmq)") with
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
    /// <see cref="RabbitMqAddress.CreateConnectionFactory"/>). With several nodes the bus uses MassTransit's cluster
    /// setting: each connection try goes to the next node of the list (one node per try, the next try after the
    /// receive transport's retry delay of 1 to 30 s), so a dead node costs one refused or timed-out try
    /// (<see cref="RabbitMqAddress.ConnectionTimeout"/>) and the bus moves on without operator action. MassTransit
    /// always starts at the first node of the list, so the list is turned per process
    /// (<see cref="RabbitMqAddress.NodesInOrderFor"/>) to spread a fleet's buses over the cluster.
    /// </summary>
    public static void UseFleetHost(this IRabbitMqBusFactoryConfigurator configurator, RabbitMqAddress address, string connectionName)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(address);
        var nodes = address.NodesInOrderFor(connectionName);
        if (nodes.Count > 1 && nodes.FirstOrDefault(n => n.Host.Contains(':', StringComparison.Ordinal)) is { } ipv6)
        {
            // ClusterNode.Parse splits "host:port" at every colon.
            throw new FormatException(
                $"ConnectionStrings:rabbitmq lists the IPv6 address {ipv6}: MassTransit's cluster setting reads nodes as host:port and cannot take one. " +
                "Give that node a DNS name, or list it alone.");
        }

        var first = nodes[0];
        configurator.Host(first.Host, (ushort)first.Port, address.VirtualHost, connectionName, host =>
        {
            host.Username(address.UserName);
            host.Password(address.Password);

            // A cut-off peer is noticed within about two heartbeats instead of the TCP timeout (minutes).
            host.Heartbeat(address.Heartbeat);
            host.RequestedConnectionTimeout(address.ConnectionTimeout);
            Func<RabbitMqNode> dialled = () => first;
            if (nodes.Count > 1)
            {
                host.UseCluster(cluster =>
                {
                    foreach (var node in nodes)
                    {
                        cluster.Node($"{node.Host}:{node.Port}");
                    }
                });

                // The cluster's resolver knows which node the try in progress dialled (a bus makes one try at a time).
                var resolver = (host as RabbitMqHostConfigurator)?.Settings.EndpointResolver
                    ?? throw new InvalidOperationException("MassTransit's host configurator did not keep the cluster's node resolver; the per-node certificate check needs it.");
                dialled = () => resolver.LastHost is { HostName: { } name } last
                    ? nodes.FirstOrDefault(n => n.Host == name && n.Port == (last.Port ?? first.Port)) ?? new RabbitMqNode(name, last.Port ?? first.Port)
                    : first;
            }

            if (address.UseTls)
            {
                // MassTransit's own default accepts RemoteCertificateChainErrors: any self-made certificate would do.
                // The same check as every other Fleet connection instead, and the OS's choice of TLS version (1.3
                // too, where MassTransit would pin 1.2).
                host.UseSsl(ssl =>
                {
                    ssl.ServerName = first.Host;
                    ssl.Protocol = SslProtocols.None;
                    ssl.EnforcePolicyErrors(SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable);
                    ssl.CertificateValidationCallback = nodes.Count == 1
                        ? address.Certificates.For(first.ServerDescription)
                        : CheckedAgainstDialledNode(address.Certificates, dialled);
                });
            }
        });
    }

    /// <summary>
    /// The certificate check for a bus on several nodes. MassTransit sends one TLS server name (the first node's) to
    /// every node, so the handshake's own host-name verdict is about the wrong name on every other node: it is
    /// replaced by a check of the certificate against the host of the node actually dialled, and the chain is checked
    /// as for any Fleet connection. Each node's certificate must therefore name that node, as with one node.
    /// </summary>
    public static RemoteCertificateValidationCallback CheckedAgainstDialledNode(ServerCertificateValidator certificates, Func<RabbitMqNode> dialled)
    {
        ArgumentNullException.ThrowIfNull(certificates);
        ArgumentNullException.ThrowIfNull(dialled);
        return (sender, certificate, chain, errors) =>
        {
            var node = dialled();
            if (certificate is not null)
            {
                var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                errors = leaf.MatchesHostname(node.Host)
                    ? errors & ~SslPolicyErrors.RemoteCertificateNameMismatch
                    : errors | SslPolicyErrors.RemoteCertificateNameMismatch;
            }

            return certificates.For(node.ServerDescription)(sender, certificate, chain, errors);
        };
    }
}
