using Npgsql;
using NpgsqlTypes;

namespace Fleet.Persistence.Limits;

/// <summary>One row of <c>fleet.limits</c>, as the API and <c>fleet limit list</c> show it.</summary>
/// <param name="BlockedReason"><c>rate-limit</c> or <c>concurrency-limit</c> while the dispatcher holds tasks back under this limit; null otherwise.</param>
/// <param name="BlockedSince">Since when <paramref name="BlockedReason"/> holds.</param>
public sealed record LimitRow(
    string Scope,
    string Key,
    double? PerSecond,
    int? Burst,
    int? MaxRunning,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    string? BlockedReason,
    DateTimeOffset? BlockedSince);

/// <summary>
/// The management side of <c>fleet.limits</c> (set, list, read, remove), shared by the API's <c>/limits</c> and the
/// <c>fleet limit</c> command so that both store and check a limit the same way. The dispatcher reads the table
/// (<c>LimitCatalog</c>) and writes <c>blocked_reason</c>; nothing here touches those two columns.
/// </summary>
public sealed class LimitStore(NpgsqlDataSource dataSource)
{
    public const string Columns = "scope, key, per_second, burst, max_running, created_at, updated_at, blocked_reason, blocked_since";

    /// <summary>
    /// Creates the limit, or replaces its numbers when it exists (a value left null is no such limit, as in a PUT);
    /// <c>Created</c> tells which. The values must have passed <see cref="LimitRules.Check"/>: the table's check
    /// constraints refuse the rest with an exception.
    /// </summary>
    public async Task<(LimitRow Row, bool Created)> SetAsync(
        string scope, string key, double? perSecond, int? burst, int? maxRunning, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // xmax is 0 on a row version this statement inserted, and the updating transaction's id on one it updated:
        // the one way to tell the two apart in a single upsert.
        await using var command = dataSource.CreateCommand($"""
            INSERT INTO fleet.limits (scope, key, per_second, burst, max_running, created_at, updated_at)
            VALUES (@scope, @key, @per_second, @burst, @max_running, @now, @now)
            ON CONFLICT (scope, key) DO UPDATE SET
                per_second = EXCLUDED.per_second, burst = EXCLUDED.burst, max_running = EXCLUDED.max_running,
                updated_at = EXCLUDED.updated_at
            RETURNING {Columns}, xmax = 0
            """);
        command.Parameters.AddWithValue("scope", scope);
        command.Parameters.AddWithValue("key", key);
        command.Parameters.Add(new NpgsqlParameter("per_second", NpgsqlDbType.Double) { Value = (object?)perSecond ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("burst", NpgsqlDbType.Integer) { Value = (object?)burst ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("max_running", NpgsqlDbType.Integer) { Value = (object?)maxRunning ?? DBNull.Value });
        command.Parameters.AddWithValue("now", now);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return (Read(reader), reader.GetBoolean(9));
    }

    /// <summary>Every limit, types first, then tenants, each by key.</summary>
    public async Task<IReadOnlyList<LimitRow>> ListAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM fleet.limits ORDER BY scope DESC, key");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<LimitRow>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(Read(reader));
        }

        return rows;
    }

    public async Task<LimitRow?> GetAsync(string scope, string key, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM fleet.limits WHERE scope = @scope AND key = @key");
        command.Parameters.AddWithValue("scope", scope);
        command.Parameters.AddWithValue("key", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? Read(reader) : null;
    }

    /// <summary>Deletes the limit; false when there is none. Tasks it held back are the dispatcher's to publish from then on.</summary>
    public async Task<bool> RemoveAsync(string scope, string key, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("DELETE FROM fleet.limits WHERE scope = @scope AND key = @key");
        command.Parameters.AddWithValue("scope", scope);
        command.Parameters.AddWithValue("key", key);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }

    /// <summary>Reads a row of <see cref="Columns"/>, in that order.</summary>
    public static LimitRow Read(NpgsqlDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new LimitRow(
            reader.GetString(0),
            reader.GetString(1),
            reader.IsDBNull(2) ? null : reader.GetDouble(2),
            reader.IsDBNull(3) ? null : reader.GetInt32(3),
            reader.IsDBNull(4) ? null : reader.GetInt32(4),
            reader.GetFieldValue<DateTimeOffset>(5),
            reader.GetFieldValue<DateTimeOffset>(6),
            reader.IsDBNull(7) ? null : reader.GetString(7),
            reader.IsDBNull(8) ? null : reader.GetFieldValue<DateTimeOffset>(8));
    }
}
