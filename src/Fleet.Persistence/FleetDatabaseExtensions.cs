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
        services.AddSingleton(_ => CreateDataSource(connectionString));
        services.AddPooledDbContextFactory<FleetDbContext>((sp, options) => options.UseFleetNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        return services;
    }

    /// <summary>
    /// The pool for a Fleet host. Unless the connection string says otherwise it prepares the statements it runs
    /// most (<c>Max Auto Prepare</c>): the worker's batched claim and completion statements are large CTEs whose
    /// parse and plan would otherwise be paid again on every batch, thousands of times a second under load.
    /// Prepared statements survive a pooled connection's close and open.
    /// </summary>
    public static NpgsqlDataSource CreateDataSource(string connectionString)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);

        // The typed builder reports every keyword it knows as present; only the plain one tells what was written.
        var written = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        if (!written.ContainsKey("Max Auto Prepare") && !written.ContainsKey("MaxAutoPrepare"))
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = 32;
        }

        return builder.Build();
    }

    /// <summary>The provider settings every FleetDbContext uses (migrations history in the fleet schema).</summary>
    public static DbContextOptionsBuilder UseFleetNpgsql(this DbContextOptionsBuilder options, NpgsqlDataSource dataSource) =>
        options.UseNpgsql(dataSource, npgsql => npgsql
            .MigrationsHistoryTable("__ef_migrations_history", FleetDbContext.Schema)
            .EnableRetryOnFailure(maxRetryCount: 5));
}
