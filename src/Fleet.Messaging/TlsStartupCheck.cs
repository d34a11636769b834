using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Fleet.Client;
using Fleet.Client.Tls;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Messaging;

public static class TlsStartupExtensions
{
    /// <summary>
    /// Binds and validates the <c>Tls</c> section at start and checks, before anything else of the host starts, that
    /// the database and the broker are reached the way it requires (<see cref="TlsStartupCheck"/>). Call it first, so
    /// that its check runs before the hosted services that connect.
    /// </summary>
    public static IHostApplicationBuilder AddFleetTls(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<FleetTlsOptions>()
            .BindConfiguration(FleetTlsOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddHostedService<TlsStartupCheck>();
        return builder;
    }
}

/// <summary>
/// At start: refuses a database connection string that would not verify its server (<see cref="FleetTlsOptions.PostgresProblem"/>),
/// warns about each opt-out that is on, and makes one TLS handshake with the broker (and one database login under
/// <c>SSL Mode=VerifyFull</c>/<c>VerifyCA</c>) so that a certificate that is refused stops the process with one clear
/// message, instead of a bus that retries the handshake forever. A server that does not answer yet is no reason to
/// stop: the bus and the pools retry as they always do.
/// </summary>
public sealed partial class TlsStartupCheck(IConfiguration configuration, IOptions<FleetTlsOptions> options, ILogger<TlsStartupCheck> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var tls = options.Value;
        try
        {
            var broker = configuration.GetRabbitMqAddress();
            if (broker.UseTls && tls.RabbitMqAllowUntrusted)
            {
                LogUntrustedBroker(logger, broker.ServerDescription);
            }

            if (configuration.GetConnectionString("fleetdb") is { Length: > 0 } postgres)
            {
                CheckPostgresMode(tls, postgres);
                await ProbePostgresAsync(postgres, cancellationToken).ConfigureAwait(false);
            }

            if (broker.UseTls && !tls.RabbitMqAllowUntrusted)
            {
                // Every node: a certificate one node would refuse shows at start, not at the first move to that node.
                foreach (var node in broker.Nodes)
                {
                    await ProbeBrokerAsync(broker, node, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (FleetTlsException ex)
        {
            LogRefused(logger, ex.Message);
            throw;
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void CheckPostgresMode(FleetTlsOptions tls, string postgres)
    {
        if (tls.PostgresProblem(postgres) is { } problem)
        {
            throw new FleetTlsException(problem);
        }

        if (tls.PostgresAllowUnverified && FleetTlsOptions.IsUnverifiedPostgres(postgres))
        {
            var builder = new NpgsqlConnectionStringBuilder(postgres);
            LogUnverifiedPostgres(logger, builder.Host ?? "", builder.SslMode);
        }
    }

    /// <summary>One login without the pool when Npgsql verifies the certificate; only a refused certificate stops the start.</summary>
    private static async Task ProbePostgresAsync(string postgres, CancellationToken cancellationToken)
    {
        var builder = new NpgsqlConnectionStringBuilder(postgres) { Pooling = false };
        if (builder.SslMode is not (SslMode.VerifyFull or SslMode.VerifyCA))
        {
            return;
        }

        try
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ExceptionChain.Find<AuthenticationException>(ex) is { } refused)
        {
            throw new FleetTlsException(
                $"PostgreSQL at {builder.Host}:{builder.Port} refused: its certificate does not verify with SSL Mode={builder.SslMode} and " +
                $"Root Certificate={(string.IsNullOrEmpty(builder.RootCertificate) ? "(system trust store)" : builder.RootCertificate)}: {refused.Message}",
                ex);
        }
        catch (Exception ex) when (ex is NpgsqlException or SocketException or TimeoutException)
        {
            // Down or unreachable: the pools retry, as without TLS.
        }
    }

    /// <summary>A TCP connection and a TLS handshake with one broker node's certificate check, nothing more.</summary>
    private static async Task ProbeBrokerAsync(RabbitMqAddress broker, RabbitMqNode node, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(broker.ConnectionTimeout);
        try
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(node.Host, node.Port, timeout.Token).ConfigureAwait(false);
            await using var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = node.Host,
                    RemoteCertificateValidationCallback = broker.Certificates.For(node.ServerDescription),
                },
                timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ServerCertificateException.FindIn(ex) is { } refused)
        {
            throw new FleetTlsException(refused.Message, ex);
        }
        catch (AuthenticationException ex)
        {
            // A handshake that fails for another reason (no TLS on that port, no common protocol) would fail the same way forever.
            throw new FleetTlsException($"{node.ServerDescription}: the TLS handshake failed ({ex.Message}). Is that port the broker's TLS listener?", ex);
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // Down, unreachable, or no TLS on that port: the bus retries and logs that, as without TLS.
        }
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "TLS: {Reason}")]
    private static partial void LogRefused(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tls:RabbitMqAllowUntrusted is on: the certificate of {Server} is not checked; whoever sits on the network path can read and change every message.")]
    private static partial void LogUntrustedBroker(ILogger logger, string server);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tls:PostgresAllowUnverified is on: the database at {Host} is used with SSL Mode={SslMode}, which does not verify its certificate; whoever sits on the network path can read and change the data.")]
    private static partial void LogUnverifiedPostgres(ILogger logger, string host, SslMode sslMode);
}
