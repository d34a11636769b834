using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Fleet.Persistence;

/// <summary>Lets <c>dotnet ef</c> build the model without a host; no database is contacted to add a migration.</summary>
internal sealed class DesignTimeFleetDbContextFactory : IDesignTimeDbContextFactory<FleetDbContext>
{
    public FleetDbContext CreateDbContext(string[] args)
    {
        var options = new DbContextOptionsBuilder<FleetDbContext>()
            .UseNpgsql("Host=localhost;Database=fleet", npgsql => npgsql.MigrationsHistoryTable("__ef_migrations_history", FleetDbContext.Schema))
            .Options;
        return new FleetDbContext(options);
    }
}
