using Fleet.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Worker.Reconciliation;

/// <summary>
/// The worker's run of the due relay (<see cref="OutboxRelay.RunDueLoopAsync"/>): every
/// <c>Worker:DueRelayIntervalMs</c> it publishes the delayed tasks and retries whose time has come, if no other process (an API
/// replica or another worker) holds the due relay's advisory lock. With it, a fleet fed only by
/// <see cref="FleetClient"/> or plain JSON, with no API running, still starts its delayed tasks and retries on time.
/// </summary>
public sealed class DuePublisher(
    NpgsqlDataSource dataSource,
    RabbitMqTaskPublisher publisher,
    IOptions<WorkerOptions> options,
    ILogger<OutboxRelay> logger) : BackgroundService
{
    /// <summary>Most tasks one round publishes; a full round is followed by another at once.</summary>
    private const int BatchSize = 1000;

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = options.Value.DueRelayIntervalMs;
        if (interval == 0)
        {
            return Task.CompletedTask;
        }

        // The publisher is the worker's own (publisher confirms, plain JSON as producers send it); the defaults of
        // TaskSubmitterOptions give the chunk size and the publish timeout of one round.
        var relay = new OutboxRelay(dataSource, publisher, new TaskSubmitterOptions(), logger);
        return relay.RunDueLoopAsync(TimeSpan.FromMilliseconds(interval), BatchSize, stoppingToken);
    }
}
