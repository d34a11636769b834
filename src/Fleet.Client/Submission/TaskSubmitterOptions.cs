using System.ComponentModel.DataAnnotations;
using Fleet.Contracts;

namespace Fleet.Client;

/// <summary>How <see cref="TaskSubmitter"/> routes and writes tasks; shared by <see cref="FleetClient"/> and the HTTP API.</summary>
public sealed class TaskSubmitterOptions
{
    /// <summary>Task types sent to <c>fleet-cpu</c> when a request names no queue; all others go to <c>fleet-io</c>.</summary>
    public ISet<string> CpuTypes { get; } = new HashSet<string>(StringComparer.Ordinal) { "sha256", "sieve", "heat" };

    /// <summary>Default <c>maxAttempts</c> of requests that set none.</summary>
    [Range(1, 100)]
    public int DefaultMaxAttempts { get; set; } = 3;

    /// <summary>Rows per INSERT statement and messages per publish round.</summary>
    [Range(1, 50_000)]
    public int ChunkSize { get; set; } = 2_000;

    /// <summary>
    /// How long the publishing of one submission (all its chunks) may take before it gives up and leaves the rest to
    /// the relay (their <c>published_at</c> stays null). Without a limit a request would hang for as long as the
    /// broker is down. A relay must wait longer than this before it republishes, or it races live submissions.
    /// </summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public string QueueFor(TaskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.Queue ?? (CpuTypes.Contains(request.Type) ? TaskQueues.Cpu : TaskQueues.Io);
    }
}
