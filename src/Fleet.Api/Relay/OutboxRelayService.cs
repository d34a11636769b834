using Fleet.Client;
using Fleet.Persistence;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Relay;

/// <summary>
/// Republishes submissions that were committed but never confirmed by the broker (the API or a
/// <see cref="FleetClient"/> died between commit and confirm, or the broker was down): every
/// <c>Api:RelayIntervalSeconds</c> it runs an <see cref="OutboxRelay.RelayUnpublishedAsync"/> round, which does work
/// only in the one process holding the relay's PostgreSQL advisory lock, so N API replicas do not publish the same
/// rows N times. The lock holder also deletes expired idempotency keys now and then
/// (<see cref="RetentionService.DeleteExpiredIdempotencyKeysAsync"/>).
/// </summary>
public sealed partial class OutboxRelayService(
    OutboxRelay relay, RetentionService retention, IOptions<ApiOptions> options, ILogger<OutboxRelayService> logger) : BackgroundService
{
    /// <summary>Rounds in a row while each one finds a full batch; a backlog larger than that waits for the next tick.</summary>
    private const int MaxRoundsPerTick = 20;

    private static readonly TimeSpan CleanupInterval = TimeSpan.FromMinutes(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var api = options.Value;
        if (!api.RelayEnabled)
        {
            return;
        }

        var olderThan = TimeSpan.FromSeconds(api.RelayAfterSeconds);
        var lastCleanup = DateTimeOffset.MinValue;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(api.RelayIntervalSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    var result = default(RelayResult);
                    for (var round = 0; round < MaxRoundsPerTick; round++)
                    {
                        result = await relay.RelayUnpublishedAsync(olderThan, api.RelayBatchSize, stoppingToken).ConfigureAwait(false);
                        if (result.Republished < api.RelayBatchSize)
                        {
                            break;
                        }
                    }

                    if (result.HeldLock && DateTimeOffset.UtcNow - lastCleanup > CleanupInterval)
                    {
                        lastCleanup = DateTimeOffset.UtcNow;
                        var deleted = await retention.DeleteExpiredIdempotencyKeysAsync(
                            TimeSpan.FromHours(api.IdempotencyKeyHours), 10_000, stoppingToken).ConfigureAwait(false);
                        if (deleted > 0)
                        {
                            LogKeysDeleted(deleted);
                        }
                    }
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
                {
                    // The database or the broker is away; the rows wait, and the next tick tries again.
                    LogRoundFailed(ex.GetType().Name, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Relay round failed ({ErrorType}: {Reason}); retrying on the next tick")]
    private partial void LogRoundFailed(string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted {Count} expired idempotency keys")]
    private partial void LogKeysDeleted(int count);
}
