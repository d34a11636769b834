using Fleet.Client;
using Microsoft.Extensions.Hosting;

namespace Fleet.Worker.Reconciliation;

/// <summary>
/// The worker's run of the <see cref="Dispatcher"/>: it publishes dispatched tasks (a tenant, a priority, a limited
/// type) while this worker leads, so that a fleet with no API running dispatches too.
/// </summary>
public sealed class DispatchRunner(Dispatcher dispatcher) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => dispatcher.RunAsync(stoppingToken);
}
