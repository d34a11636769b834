using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Fleet.UnitTests;

/// <summary>The migrations are written by hand when <c>dotnet ef</c> is not installed: their snapshot must still be the model.</summary>
public sealed class MigrationModelTests
{
    [Fact]
    public void TheModel_HasNoChangeMissingFromTheMigrations()
    {
        // No connection is opened: the check compares the model with the last migration's snapshot.
        using var dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Database=none");
        var options = new DbContextOptionsBuilder<FleetDbContext>();
        options.UseFleetNpgsql(dataSource);
        using var db = new FleetDbContext(options.Options);

        Assert.False(db.Database.HasPendingModelChanges(), "the model differs from FleetDbContextModelSnapshot: add or fix a migration");
    }
}
