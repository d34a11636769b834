using Fleet.Contracts;
using Npgsql;

namespace Fleet.Client;

/// <summary>A queue and whether it is paused (<c>fleet.queue_pauses</c>): since when and why, as the operator said.</summary>
public sealed record QueuePauseState(string Queue, bool Paused, DateTimeOffset? PausedAt, string? Reason)
{
    /// <summary>The queue's lane, <c>cpu</c> or <c>io</c>, where the state comes from <see cref="QueuePauses.ListAsync"/>.</summary>
    public string? Lane { get; init; }
}

/// <summary>
/// Pausing and resuming a lane: one row of <c>fleet.queue_pauses</c> per paused lane. Shared by the API's
/// <c>/queues</c>, the <c>fleet queue</c> command, the workers (which stop consuming a paused lane and its dispatch
/// queue), the dispatcher and the autoscaling signal, so that all of them read the table the same way.
/// </summary>
public sealed class QueuePauses(NpgsqlDataSource dataSource)
{
    /// <summary>The longest reason stored (the column's length).</summary>
    public const int MaxReasonLength = 500;

    /// <summary>
    /// Why <paramref name="name"/> cannot be paused, or null when it is a queue of <paramref name="catalog"/>. A dispatch
    /// queue is refused with a pointer to its queue: the two pause together, so that a paused queue starts no
    /// dispatched task either.
    /// </summary>
    public static (bool NotFound, string Problem)? Check(string? name, QueueCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        if (catalog.Contains(name))
        {
            return null;
        }

        if (name is not null && name.EndsWith(TaskQueues.DispatchSuffix, StringComparison.Ordinal) && catalog.Contains(TaskQueues.LaneOf(name)))
        {
            return (false, $"'{name}' is the dispatch queue of {TaskQueues.LaneOf(name)}: pause or resume the queue {TaskQueues.LaneOf(name)}, and its dispatch queue pauses and resumes with it.");
        }

        return (true, $"There is no queue '{name}'; the queues are {catalog}.");
    }

    /// <summary><see cref="Check(string?, QueueCatalog)"/> against the queues of <c>fleet.queues</c>.</summary>
    public async Task<(bool NotFound, string Problem)?> CheckAsync(string? name, CancellationToken cancellationToken) =>
        Check(name, await QueueCatalog.ReadAsync(dataSource, cancellationToken).ConfigureAwait(false));

    /// <summary>Every queue of <c>fleet.queues</c>, paused or not, with its lane: the built-in lanes first, then by name.</summary>
    public async Task<IReadOnlyList<QueuePauseState>> ListAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT q.name, q.lane, p.paused_at, p.reason
            FROM fleet.queues q LEFT JOIN fleet.queue_pauses p ON p.queue = q.name
            ORDER BY q.name NOT IN ('fleet-cpu', 'fleet-io'), q.name
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<QueuePauseState>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(new QueuePauseState(
                reader.GetString(0), !reader.IsDBNull(2), reader.IsDBNull(2) ? null : reader.GetFieldValue<DateTimeOffset>(2), reader.IsDBNull(3) ? null : reader.GetString(3))
            {
                Lane = reader.GetString(1),
            });
        }

        return rows;
    }

    /// <summary>
    /// Pauses a queue (checked with <see cref="Check"/> first). Pausing a paused lane keeps its <c>paused_at</c>, and
    /// replaces its reason when a new one is given.
    /// </summary>
    public async Task<QueuePauseState> PauseAsync(string queue, string? reason, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            INSERT INTO fleet.queue_pauses (queue, reason) VALUES (@queue, @reason)
            ON CONFLICT (queue) DO UPDATE SET reason = coalesce(EXCLUDED.reason, fleet.queue_pauses.reason)
            RETURNING queue, paused_at, reason, (SELECT lane FROM fleet.queues WHERE name = queue)
            """);
        command.Parameters.AddWithValue("queue", queue);
        command.Parameters.AddWithValue("reason", string.IsNullOrWhiteSpace(reason) ? DBNull.Value : reason.Trim());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new QueuePauseState(reader.GetString(0), true, reader.GetFieldValue<DateTimeOffset>(1), reader.IsDBNull(2) ? null : reader.GetString(2))
        {
            Lane = reader.IsDBNull(3) ? null : reader.GetString(3),
        };
    }

    /// <summary>Resumes a lane; false when it was not paused.</summary>
    public async Task<bool> ResumeAsync(string queue, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("DELETE FROM fleet.queue_pauses WHERE queue = @queue");
        command.Parameters.AddWithValue("queue", queue);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }
}
