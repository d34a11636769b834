using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fleet.Api.Autoscaling;
using Fleet.Persistence;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Api.Retention;

/// <summary>
/// Applies retention by itself when <c>Retention:KeepDays</c> is set: every <c>Retention:IntervalMinutes</c> a pass
/// deletes what <c>fleet retention --older-than {KeepDays}d</c> would (<see cref="RetentionService"/>), in the one
/// process of the fleet that holds the retention advisory lock (<see cref="RetentionService.DeleteExclusiveAsync"/>);
/// API replicas whose pass finds the lock taken skip it. The API runs it, not the workers: it already does the
/// fleet's housekeeping (relay, key expiry, schedules), replicas are few, and workers run handler code that should
/// never share a process with a login that can delete history.
/// <para>
/// Each pass logs what it deleted and counts it on the meter <c>Fleet.Api</c>: <c>fleet_retention_passes_total{outcome}</c>
/// (<c>ran</c>, <c>skipped</c>: another process held the lock, <c>failed</c>) and
/// <c>fleet_retention_deleted_total{table}</c>.
/// </para>
/// </summary>
public sealed partial class AutoRetentionService : BackgroundService
{
    /// <summary>
    /// The first pass comes this soon after start (or after one interval, if shorter), not a whole interval later: an
    /// API restarted more often than every <c>IntervalMinutes</c> (deploys) would otherwise never run one.
    /// </summary>
    private static readonly TimeSpan FirstPassAfter = TimeSpan.FromMinutes(1);

    private readonly RetentionOptions _options;
    private readonly ILogger<AutoRetentionService> _logger;
    private readonly Counter<long> _passes;
    private readonly Counter<long> _deleted;

    public AutoRetentionService(IOptions<RetentionOptions> options, IMeterFactory meters, ILogger<AutoRetentionService> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(meters);
        _options = options.Value;
        _logger = logger;

        // The factory hands out one Meter per name: these counters sit beside the API's gauges.
        var meter = meters.Create(AutoscaleSampler.MeterName);
        _passes = meter.CreateCounter<long>("fleet.retention.passes",
            description: "Automatic retention passes of this process, by outcome: ran, skipped (another process held the lock), failed.");
        _deleted = meter.CreateCounter<long>("fleet.retention.deleted",
            description: "Rows deleted by this process's automatic retention, by table.");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_options.KeepDays == 0)
        {
            return;
        }

        // A pool of its own on the retention login, used by nothing else (RetentionOptions.ConnectionStringName).
        await using var dataSource = NpgsqlDataSource.Create(_options.ConnectionString!);
        var retention = new RetentionService(dataSource);
        var interval = TimeSpan.FromMinutes(_options.IntervalMinutes);
        var wait = interval < FirstPassAfter ? interval : FirstPassAfter;
        LogEnabled(_options.KeepDays, _options.IntervalMinutes);
        try
        {
            while (true)
            {
                await Task.Delay(wait, stoppingToken).ConfigureAwait(false);
                wait = interval;
                await PassAsync(retention, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task PassAsync(RetentionService retention, CancellationToken stoppingToken)
    {
        var cutoff = DateTimeOffset.UtcNow.AddDays(-_options.KeepDays);
        try
        {
            if (await retention.DeleteExclusiveAsync(cutoff, _options.BatchSize, stoppingToken).ConfigureAwait(false) is not { } result)
            {
                _passes.Add(1, new KeyValuePair<string, object?>("outcome", "skipped"));
                LogSkipped();
                return;
            }

            _passes.Add(1, new KeyValuePair<string, object?>("outcome", "ran"));
            Count("tasks", result.Tasks);
            Count("task_attempts", result.Attempts);
            Count("idempotency_keys", result.IdempotencyKeys);
            Count("batch_callbacks", result.BatchCallbacks);
            Count("workers", result.Workers);
            LogDeleted(result.Tasks, result.Attempts, result.IdempotencyKeys, result.BatchCallbacks, result.Workers, cutoff, result.Batches, result.Elapsed.TotalSeconds);
        }
        catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OutOfMemoryException)
        {
            // The database is away, or the login may not delete: every committed batch stays committed, and the next
            // pass continues where this one stopped.
            _passes.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));
            LogFailed(ex.GetType().Name, ex.Message);
        }
    }

    private void Count(string table, long rows)
    {
        if (rows > 0)
        {
            _deleted.Add(rows, new KeyValuePair<string, object?>("table", table));
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Retention: automatic, deleting what is older than {KeepDays} days every {IntervalMinutes} minutes (one process of the fleet at a time)")]
    private partial void LogEnabled(int keepDays, double intervalMinutes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Retention: deleted {Tasks} tasks, {Attempts} attempt rows, {Keys} idempotency keys, {Callbacks} batch callbacks, {Workers} worker rows older than {Cutoff:o} in {Batches} batches, {Seconds:0.0} s")]
    private partial void LogDeleted(long tasks, long attempts, long keys, long callbacks, long workers, DateTimeOffset cutoff, int batches, double seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Retention: another process holds the retention lock; this pass is skipped")]
    private partial void LogSkipped();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Retention pass failed ({ErrorType}: {Reason}); the next pass continues where it stopped")]
    private partial void LogFailed(string errorType, string reason);
}
