using Microsoft.Extensions.Options;

namespace Fleet.Worker.Telemetry;

/// <summary>Who this worker process is, as recorded in <c>fleet.workers</c> and on every attempt it runs.</summary>
public sealed class WorkerIdentity(IOptions<WorkerOptions> options)
{
    public string Host { get; } = options.Value.HostName;

    public int Pid { get; } = Environment.ProcessId;

    /// <summary><c>host:pid:random</c>: unique per process start, readable in SQL.</summary>
    public string Id { get; } = $"{options.Value.HostName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..6]}";

    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;
}
