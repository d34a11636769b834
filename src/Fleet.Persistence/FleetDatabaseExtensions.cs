using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Fleet.Persistence;

public static class FleetDatabaseExtensions
{
    /// <summary>Registers the fleet database (<c>ConnectionStrings:fleetdb</c>) for this host.</summary>
    public static IHostApplicationBuilder AddFleetDatabase(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddFleetDatabase(builder.Configuration.GetFleetDatabaseConnectionString());
        return builder;
    }

    /// <summary>
    /// <c>ConnectionStrings:fleetdb</c>; fails naming both the config path and the environment variable when it is
    /// missing.
    /// </summary>
    public static string GetFleetDatabaseConnectionString(this IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var value = configuration.GetConnectionString("fleetdb");
        return string.IsNullOrWhiteSpace(value)
            ? throw new InvalidOperationException(
                "Missing connection string 'ConnectionStrings:fleetdb' (environment variable ConnectionStrings__fleetdb). " +
                "Run `make up` and `. .fleet/env`, or set it yourself.")
            : value;
    }

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

    /// <summary>
    /// The worker's own pool for <see cref="TaskLedger"/>, apart from the host's pool because two settings suit the
    /// ledger's batches and nothing else:
    /// <list type="bullet">
    /// <item><b>Generic plans</b> (<c>plan_cache_mode=force_generic_plan</c>, unless the connection string's
    /// <c>Options</c> already set it). At a CPU lane's pace a batch holds one or two rows, and for so few PostgreSQL's
    /// default keeps planning the claim CTE afresh on every execution (a custom plan for one row looks cheaper than
    /// the generic one, estimated at 100), and planning cost more than running it (docs/decisions/0101). The generic
    /// plan is the same primary-key lookups for 1 row as for 500. The host's EF and dashboard queries keep the default: a range on <c>finished_at</c>, say,
    /// plans much better with its value.</item>
    /// <item><b>Keyed lookups only</b> (<c>enable_seqscan</c>, <c>enable_hashjoin</c>, <c>enable_mergejoin</c> and
    /// <c>enable_material</c> off, unless <c>Options</c> sets any <c>enable_</c> itself). Every ledger statement joins its
    /// handful of input rows to <c>tasks</c> and <c>task_attempts</c> by primary key, and its generic plan is made once,
    /// from the statistics of that moment. Made while the tables were new, truncated or restored and not analysed yet,
    /// that plan read the whole table for every batch (a hash join over a sequential scan, or a nested loop over a
    /// materialised full index scan) until autovacuum's next analyse, so each batch cost more as the table grew:
    /// PostgreSQL's CPU rose from 6 to 28 s per 20,000 noop tasks within three runs after a TRUNCATE, and stays at 2 to
    /// 3 s with these settings (docs/benchmarks.md#fan-in-callbacks). Priced out, the other plan shapes leave the
    /// index lookups, whatever the statistics say.</item>
    /// <item><b>No reset on close.</b> A flush is one batch in its own implicit transaction and leaves no session
    /// state behind, so the seven statements Npgsql otherwise sends before a pooled connection's next use (for
    /// session settings, advisory locks, temp tables) would run once per flush for nothing.</item>
    /// </list>
    /// </summary>
    public static NpgsqlDataSource CreateLedgerDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true };
        if (builder.Options?.Contains("plan_cache_mode", StringComparison.OrdinalIgnoreCase) != true)
        {
            builder.Options = $"{builder.Options} -c plan_cache_mode=force_generic_plan".TrimStart();
        }

        if (builder.Options?.Contains("enable_", StringComparison.OrdinalIgnoreCase) != true)
        {
            builder.Options = $"{builder.Options} -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off".TrimStart();
        }

        return CreateDataSource(builder.ConnectionString);
    }

    /// <summary>The provider settings every FleetDbContext uses (migrations history in the fleet schema).</summary>
    public static DbContextOptionsBuilder UseFleetNpgsql(this DbContextOptionsBuilder options, NpgsqlDataSource dataSource) =>
        options.UseNpgsql(dataSource, npgsql => npgsql
            .MigrationsHistoryTable("__ef_migrations_history", FleetDbContext.Schema)
            .EnableRetryOnFailure(maxRetryCount: 5));
}
