using Fleet.Persistence;
using Fleet.Worker.MessagePath;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Fleet.Worker.Telemetry;

/// <summary>
/// Ready while the CPU lane replaces the threads it abandons to handlers that ignore their time limit; Unhealthy
/// once more than <c>Worker:MaxAbandonedThreads</c> are stuck and it has stopped replacing them (see
/// <see cref="CpuLane.Exhausted"/>: the worker is then stopping itself).
/// </summary>
public sealed class CpuLaneHealthCheck(CpuLane lane) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(lane.Exhausted
            ? HealthCheckResult.Unhealthy(
                $"{lane.AbandonedThreads} CPU-lane threads are stuck in handlers that ignore their time limit, more than Worker:MaxAbandonedThreads " +
                $"({lane.MaxAbandonedThreads}) may be replaced; the lane is down to {lane.Concurrency - lane.UnreplacedThreads} of {lane.Concurrency} threads and the worker is stopping")
            : HealthCheckResult.Healthy(lane.AbandonedThreads == 0 ? null
                : $"{lane.AbandonedThreads} abandoned CPU-lane threads replaced (at most {lane.MaxAbandonedThreads})"));
}

/// <summary>Ready only while result writes reach the database (see <see cref="TaskLedger.OutageSince"/>).</summary>
public sealed class DatabaseWritesHealthCheck(TaskLedger ledger) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(ledger.OutageSince is { } since
            ? HealthCheckResult.Unhealthy($"database writes failing since {since:O}; tasks are held until it answers")
            : HealthCheckResult.Healthy());
}
