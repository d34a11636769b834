using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Fleet.Persistence;

public static class FleetDatabaseExtensions
{
    /// <summary>
    /// Registers one <see cref="NpgsqlDataSource"/> (the connection pool) and a pooled <see cref="FleetDbContext"/>
    /// factory on top of it, so EF queries and the batched SQL writes share connections.
    /// </summary>
    public static IServiceCollection AddFleetDatabase(this IServiceCollection services, string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        services.AddSingleton(_ => new NpgsqlDataSourceBuilder(connectionString).Build());
        services.AddPooledDbContextFactory<FleetDbContext>((sp, options) => options.UseFleetNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        return services;
    }

    /// <summary>The provider settings every FleetDbContext uses (migrations history in the fleet schema).</summary>
    public static DbContextOptionsBuilder UseFleetNpgsql(this DbContextOptionsBuilder options, NpgsqlDataSource dataSource) =>
        options.UseNpgsql(dataSource, npgsql => npgsql
            .MigrationsHistoryTable("__ef_migrations_history", FleetDbContext.Schema)
            .EnableRetryOnFailure(maxRetryCount: 5));
}
