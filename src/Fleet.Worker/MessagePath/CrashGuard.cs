using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Tells a task that kills its worker process from the tasks that merely died beside it. A task that was running
/// when a worker died is a <em>suspect</em>: every task in flight died with the process, and the record does not say
/// which one killed it. A worker runs one suspect at a time, so a suspect that kills its process again takes only
/// unsuspected tasks with it, never another suspect: a healthy task dies at most once for each task that crashes
/// workers, while a task that crashes every process it runs in is quarantined (ends <c>failed</c> as a crash loop)
/// after <see cref="WorkerOptions.CrashLoopDeaths"/> deaths. Only redelivered messages are looked at (a death
/// always comes back as a redelivery), so the hot path pays nothing.
/// </summary>
public sealed class CrashGuard(NpgsqlDataSource dataSource, IOptions<WorkerOptions> options) : IDisposable
{
    // An execution still 'running' when its message came back died with its worker (its claim marks it abandoned).
    private const string DeathsSql = "SELECT count(*)::int FROM fleet.task_attempts WHERE task_id = @id AND outcome IN ('abandoned', 'running')";

    private readonly SemaphoreSlim _suspects = new(1, 1);

    // Process-lane children that died running the task: recorded as failed attempts with this error type.
    private const string ChildDeathsSql = "SELECT count(*)::int FROM fleet.task_attempts WHERE task_id = @id AND error_type = '" + ProcessLane.ProcessLaneErrorTypes.ChildDied + "'";

    public int DeathLimit => options.Value.CrashLoopDeaths;

    /// <summary>
    /// How many process-lane children died running the task before this attempt. Asked only after a child died (a rare
    /// ending), so that a task whose code kills every child it runs in stops at <see cref="DeathLimit"/> deaths, as a
    /// task that kills whole workers does.
    /// </summary>
    public async Task<int> ChildDeathsAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(ChildDeathsSql);
        command.Parameters.AddWithValue("id", taskId);
        return (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>
    /// For a redelivered message: when its task died with a worker before, waits until no other suspect runs in this
    /// worker, before the task is claimed. Dispose the result when the task has left the worker.
    /// </summary>
    public async Task<Isolation> IsolateIfSuspectAsync(Guid taskId, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(DeathsSql);
        command.Parameters.AddWithValue("id", taskId);
        if ((int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))! == 0)
        {
            return default;
        }

        await _suspects.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Isolation(_suspects);
    }

    public void Dispose() => _suspects.Dispose();

    /// <summary>A suspect's turn; releases it once.</summary>
    public readonly struct Isolation(SemaphoreSlim? gate) : IDisposable
    {
        public void Dispose() => gate?.Release();
    }
}
