using Npgsql;

namespace Fleet.IntegrationTests.Support;

/// <summary>The SQL reads and the polling the integration tests share, for any fixture's data source.</summary>
public static class Sql
{
    /// <summary>The rows of <paramref name="sql"/>; a <see cref="DateTime"/> parameter is sent as UTC (the columns are timestamptz).</summary>
    public static async Task<List<T>> ListAsync<T>(
        this NpgsqlDataSource dataSource, string sql, Func<NpgsqlDataReader, T> read, params (string Name, object Value)[] parameters)
    {
        await using var command = dataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value is DateTime time ? DateTime.SpecifyKind(time, DateTimeKind.Utc) : value);
        }

        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    /// <summary>Polls <paramref name="condition"/> every <paramref name="interval"/> until it holds or <paramref name="timeout"/> passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout, TimeSpan interval)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }

            await Task.Delay(interval);
        }

        return await condition();
    }
}
