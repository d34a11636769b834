using Fleet.Client;

namespace Fleet.Api.Relay;

/// <summary>
/// The API's run of the <see cref="Dispatcher"/>: it publishes dispatched tasks (a tenant, a priority, a limited
/// type) while this replica leads. Workers run it too, so a fleet fed by plain JSON with no API running still
/// dispatches.
/// </summary>
public sealed class DispatchService(Dispatcher dispatcher) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => dispatcher.RunAsync(stoppingToken);
}
