using Fleet.Client;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Relay;

/// <summary>
/// Publishes delayed tasks and retries when their time comes: every <c>Api:DueRelayIntervalMs</c> an
/// <see cref="OutboxRelay.PublishDueAsync"/> round, which publishes only in the one process (API replica or worker)
/// holding the due relay's advisory lock. Workers run the same loop, so delayed tasks fire with no API running.
/// </summary>
public sealed class DueRelayService(OutboxRelay relay, IOptions<ApiOptions> options) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var api = options.Value;
        return api.DueRelayIntervalMs == 0
            ? Task.CompletedTask
            : relay.RunDueLoopAsync(TimeSpan.FromMilliseconds(api.DueRelayIntervalMs), api.RelayBatchSize, stoppingToken);
    }
}
