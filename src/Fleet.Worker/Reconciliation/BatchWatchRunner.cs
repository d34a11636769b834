using Fleet.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.Worker.Reconciliation;

/// <summary>
/// The worker's run of the <see cref="BatchCallbackWatcher"/>: creates batches' onComplete tasks when their batch ends, so
/// that a fleet with no API running calls back too (one process at a time looks).
/// </summary>
public sealed class BatchWatchRunner(BatchCallbackWatcher watcher, IOptions<WorkflowOptions> options) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        options.Value.BatchWatchIntervalMs == 0
            ? Task.CompletedTask
            : watcher.RunAsync(TimeSpan.FromMilliseconds(options.Value.BatchWatchIntervalMs), stoppingToken);
}
