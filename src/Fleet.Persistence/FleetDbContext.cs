using System.Text;
using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Persistence;

/// <summary>
/// The <c>fleet</c> schema. Tables and columns are snake_case so analysts can query them in plain SQL.
/// Add a migration after a model change with:
/// <code>dotnet ef migrations add NAME --project src/Fleet.Persistence --output-dir Migrations</code>
/// Migrations are applied by the one-shot migrator (<c>fleet migrate</c>), never by workers at start.
/// </summary>
public sealed class FleetDbContext(DbContextOptions<FleetDbContext> options) : DbContext(options)
{
    public const string Schema = "fleet";

    public DbSet<FleetTask> Tasks => Set<FleetTask>();

    public DbSet<TaskAttempt> TaskAttempts => Set<TaskAttempt>();

    public DbSet<FleetWorker> Workers => Set<FleetWorker>();

    public DbSet<IdempotencyRecord> IdempotencyKeys => Set<IdempotencyRecord>();

    public DbSet<Schedule> Schedules => Set<Schedule>();

    public DbSet<TaskLimit> Limits => Set<TaskLimit>();

    public DbSet<BatchCallback> BatchCallbacks => Set<BatchCallback>();

    public DbSet<QueuePause> QueuePauses => Set<QueuePause>();

    public DbSet<QueueDeclaration> Queues => Set<QueueDeclaration>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.HasDefaultSchema(Schema);
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(FleetDbContext).Assembly);

        // snake_case columns: the schema is a public interface queried by hand, where "SubmittedAt" would need quotes.
        foreach (var entity in modelBuilder.Model.GetEntityTypes())
        {
            foreach (var property in entity.GetProperties())
            {
                property.SetColumnName(ToSnakeCase(property.Name));
            }

            foreach (var key in entity.GetKeys())
            {
                key.SetName($"pk_{entity.GetTableName()}");
            }
        }
    }

    internal static string ToSnakeCase(string name)
    {
        var builder = new StringBuilder(name.Length + 8);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsUpper(c))
            {
                if (i > 0)
                {
                    builder.Append('_');
                }

                builder.Append(char.ToLowerInvariant(c));
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }
}
