using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Hosting;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Api.Queues;

/// <summary>
/// The queues of <c>Api:Queues</c> (worker groups). At start, before the API takes a request: each must exist on the
/// broker, exchange and queue, with its dispatch queue, as the broker definitions' <c>FLEET_QUEUES</c> declare them;
/// otherwise the API stops with one line naming what is missing. Accepting tasks for a queue the broker lacks would
/// publish them to an exchange that is not there, and they would wait for ever. Then, in the background until it
/// succeeds (the database may come up after the API), the declarations are written to <c>fleet.queues</c>, where
/// workers read the lane of the queues they serve.
/// </summary>
internal sealed partial class QueueDeclarationService(
    QueueCatalog catalog, NpgsqlDataSource dataSource, RabbitMqAddress broker, ILogger<QueueDeclarationService> logger) : BackgroundService
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(2);

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        if (catalog.Declared.Count > 0)
        {
            await CheckBrokerAsync(cancellationToken).ConfigureAwait(false);
        }

        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (catalog.Declared.Count == 0)
        {
            return;
        }

        for (var failing = false; ; failing = true)
        {
            try
            {
                var changed = await catalog.DeclareAsync(dataSource, stoppingToken).ConfigureAwait(false);
                LogDeclared(string.Join(", ", catalog.Declared.Select(d => $"{d.Key} ({d.Value})")), changed);
                return;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is NpgsqlException or TimeoutException)
            {
                if (!failing)
                {
                    LogDeclareFailed(ex.GetType().Name, ex.Message);
                }
            }

            await Task.Delay(RetryDelay, stoppingToken).ConfigureAwait(false);
        }
    }

    private async Task CheckBrokerAsync(CancellationToken cancellationToken)
    {
        IConnection connection;
        try
        {
            connection = await broker.ConnectAsync($"fleet-api queue check {Environment.ProcessId}", cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // An unreachable broker is the bus's to wait for and readiness's to report; the check needs one to look at.
            LogUnchecked(ex.Message);
            return;
        }

        await using (connection.ConfigureAwait(false))
        {
            var missing = new List<string>();
            foreach (var queue in catalog.Declared.Keys.SelectMany(q => new[] { q, TaskQueues.DispatchQueueOf(q) }))
            {
                if (!await ExistsAsync(connection, queue, exchange: true, cancellationToken).ConfigureAwait(false))
                {
                    missing.Add($"exchange {queue}");
                }

                if (!await ExistsAsync(connection, queue, exchange: false, cancellationToken).ConfigureAwait(false))
                {
                    missing.Add($"queue {queue}");
                }
            }

            if (missing.Count > 0)
            {
                var entries = string.Join(" ", catalog.Declared.Select(d => $"{d.Key}={d.Value}"));
                var message = $"Api:Queues declares queues the broker does not have ({string.Join(", ", missing)}): tasks for them would have "
                    + $"nowhere to go. Add them to the broker definitions (FLEET_QUEUES=\"{entries}\" for infra/rabbitmq/render-definitions.sh, "
                    + "docs/worker-groups.md) and restart the broker, or remove them from Api:Queues.";
                LogMissing(message);
                throw new InvalidOperationException(message);
            }
        }
    }

    /// <summary>False only when the broker says the exchange or queue does not exist.</summary>
    private static async Task<bool> ExistsAsync(IConnection connection, string name, bool exchange, CancellationToken cancellationToken) =>
        exchange
            ? await BrokerProbe.ExchangeExistsAsync(connection, name, cancellationToken).ConfigureAwait(false)
            : await BrokerProbe.QueueAsync(connection, name, cancellationToken).ConfigureAwait(false) is not null;

    [LoggerMessage(Level = LogLevel.Information, Message = "Declared queues {Queues} in fleet.queues ({Changed} added or changed)")]
    private partial void LogDeclared(string queues, int changed);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The declared queues could not be written to fleet.queues yet ({Type}: {Reason}); retrying until the database answers")]
    private partial void LogDeclareFailed(string type, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The declared queues were not checked on the broker: it is not reachable yet ({Reason})")]
    private partial void LogUnchecked(string reason);

    [LoggerMessage(Level = LogLevel.Critical, Message = "{Message}")]
    private partial void LogMissing(string message);
}
