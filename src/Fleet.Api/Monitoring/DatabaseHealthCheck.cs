using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace Fleet.Api.Monitoring;

/// <summary>Ready only when PostgreSQL answers a query within a few seconds.</summary>
public sealed class DatabaseHealthCheck(NpgsqlDataSource dataSource) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            await using var command = dataSource.CreateCommand("SELECT 1");
            await command.ExecuteScalarAsync(timeout.Token).ConfigureAwait(false);
            return HealthCheckResult.Healthy("PostgreSQL answers.");
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            // The message names the failure, never the connection string.
            return HealthCheckResult.Unhealthy($"PostgreSQL does not answer: {ex.GetType().Name}.");
        }
    }
}
