using System.Text.Json;
using Fleet.Contracts;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// Rebuilds the message of a stored task from its <c>fleet.tasks</c> row, for whoever publishes a task again: the
/// submission relay, the due relay (delayed tasks and retries) and the worker's reconciler. Select
/// <see cref="Columns"/> first, in this order. What a worker takes from the message for a task that has a row
/// (<c>maxAttempts</c>, the time limit, the tenant) is the row's; the attempts already made are counted by the row
/// itself, which the claim reads.
/// </summary>
public static class TaskRows
{
    /// <summary>The columns <see cref="ReadOutgoing"/> reads, as a select list for <c>fleet.tasks</c> aliased <c>t</c>.</summary>
    public const string Columns = "t.id, t.type, t.queue, t.payload::text, t.priority, t.timeout_seconds, t.max_attempts, t.batch_id, t.submitted_at, t.tenant, t.attempts, t.after_task_id, t.after_batch_id";

    /// <summary>How many columns <see cref="Columns"/> has: the ordinal of the first column a statement selects after them.</summary>
    public const int ColumnCount = 13;

    /// <summary>The task message of the reader's current row, and the queue it goes to.</summary>
    public static OutgoingTask ReadOutgoing(NpgsqlDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        using var payload = JsonDocument.Parse(reader.GetString(3));
        return new OutgoingTask(reader.GetString(2), new ProcessTask
        {
            TaskId = reader.GetGuid(0),
            Type = reader.GetString(1),
            Payload = payload.RootElement.Clone(),
            Priority = reader.GetInt32(4),
            TimeoutSeconds = reader.IsDBNull(5) ? null : reader.GetInt32(5),
            MaxAttempts = reader.GetInt32(6),
            BatchId = reader.IsDBNull(7) ? null : reader.GetGuid(7),
            SubmittedAt = reader.GetFieldValue<DateTimeOffset>(8),
            Tenant = reader.IsDBNull(9) ? null : reader.GetString(9),
            AfterTaskId = reader.IsDBNull(11) ? null : reader.GetGuid(11),
            AfterBatchId = reader.IsDBNull(12) ? null : reader.GetGuid(12),
        })
        {
            Attempts = reader.GetInt32(10),
        };
    }
}
