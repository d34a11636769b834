using Npgsql;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// The delivery invariants of a fault test, read with SQL after the system healed: tasks lost (not final),
/// executions beyond one per task (duplicates), rows for ids never submitted (unexpected), and attempt rows
/// still marked running (an execution nobody closed).
/// </summary>
public sealed record DeliveryReport(int Submitted, long Lost, long DuplicateExecutions, long Unexpected, long OpenAttempts)
{
    public static Task<DeliveryReport> ReadAsync(NpgsqlDataSource dataSource, IReadOnlyCollection<Guid> submitted) =>
        ReadAsync(dataSource, submitted, []);

    /// <summary>
    /// The report on <paramref name="submitted"/>, for a test that may also have sent the tasks in
    /// <paramref name="alsoSent"/> (hostile messages, say) and checks them itself: their rows are not unexpected, and
    /// they count in nothing else.
    /// </summary>
    public static async Task<DeliveryReport> ReadAsync(NpgsqlDataSource dataSource, IReadOnlyCollection<Guid> submitted, IReadOnlyCollection<Guid> alsoSent)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        var ids = submitted.ToArray();
        await using var command = dataSource.CreateCommand("""
            SELECT
              (SELECT count(*) FROM unnest(@ids) AS s(id)
                WHERE NOT EXISTS (SELECT 1 FROM fleet.tasks t WHERE t.id = s.id
                                  AND t.status IN ('succeeded','failed','timed_out','cancelled'))),
              (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM fleet.task_attempts
                                                   WHERE task_id = ANY(@ids) GROUP BY task_id) per_task),
              (SELECT count(*) FROM fleet.tasks WHERE NOT (id = ANY(@ids)) AND NOT (id = ANY(@also))),
              (SELECT count(*) FROM fleet.task_attempts WHERE task_id = ANY(@ids) AND outcome = 'running')
            """);
        command.Parameters.AddWithValue("ids", ids);
        command.Parameters.AddWithValue("also", alsoSent.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new DeliveryReport(ids.Length, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3));
    }

    public override string ToString() =>
        $"{Submitted} submitted: {Lost} lost / {DuplicateExecutions} duplicated executions / {Unexpected} unexpected ({OpenAttempts} attempt rows still running)";
}
