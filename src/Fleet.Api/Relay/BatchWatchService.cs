using Fleet.Client;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Relay;

/// <summary>
/// The API's run of the <see cref="BatchCallbackWatcher"/>: creates batches' onComplete tasks when their batch ends. Workers
/// run it too, so a fleet with no API running still calls back.
/// </summary>
public sealed class BatchWatchService(BatchCallbackWatcher watcher, IOptions<WorkflowOptions> options) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        options.Value.BatchWatchIntervalMs == 0
            ? Task.CompletedTask
            : watcher.RunAsync(TimeSpan.FromMilliseconds(options.Value.BatchWatchIntervalMs), stoppingToken);
}
