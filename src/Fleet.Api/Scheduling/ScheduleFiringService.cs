using Microsoft.Extensions.Options;

namespace Fleet.Api.Scheduling;

/// <summary>
/// Runs <see cref="ScheduleFirer"/> rounds: after each it sleeps until the earliest next fire time, but never longer
/// than <c>Schedules:PollIntervalSeconds</c>, so that an idle fleet starts a schedule's task within about the time
/// one round takes after its tick. Replicas that find the firing lock taken look again shortly after.
/// </summary>
public sealed partial class ScheduleFiringService(
    ScheduleFirer firer,
    IOptions<ScheduleOptions> options,
    [FromKeyedServices(ScheduleFirer.ClockKey)] TimeProvider clock,
    ILogger<ScheduleFiringService> logger) : BackgroundService
{
    /// <summary>The wait of a replica that found the lock taken: the holder's round is usually over by then.</summary>
    private static readonly TimeSpan LockRetry = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// The shortest wait after a round that left something due: a schedule locked by a pause or a delete in progress,
    /// which the loop must not spin on.
    /// </summary>
    private static readonly TimeSpan MinWait = TimeSpan.FromMilliseconds(20);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.FiringEnabled)
        {
            return;
        }

        var poll = TimeSpan.FromSeconds(settings.PollIntervalSeconds);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var wait = poll;
                try
                {
                    var round = await firer.FireDueAsync(stoppingToken).ConfigureAwait(false);
                    if (!round.HeldLock)
                    {
                        wait = LockRetry < poll ? LockRetry : poll;
                    }
                    else if (round.Due >= settings.BatchSize)
                    {
                        // A full round: more may be due at once.
                        wait = TimeSpan.Zero;
                    }
                    else if (round.NextDue is { } nextDue)
                    {
                        var untilDue = nextDue - clock.GetUtcNow();
                        wait = untilDue < MinWait ? MinWait : untilDue < poll ? untilDue : poll;
                    }
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
                {
                    // The database or the broker is away; nothing was committed, and the next round fires what is due.
                    LogRoundFailed(ex.GetType().Name, ex.Message);
                }

                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, clock, stoppingToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Schedule firing round failed ({ErrorType}: {Reason}); retrying on the next round")]
    private partial void LogRoundFailed(string errorType, string reason);
}
