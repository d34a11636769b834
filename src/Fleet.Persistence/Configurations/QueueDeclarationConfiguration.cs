using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class QueueDeclarationConfiguration : IEntityTypeConfiguration<QueueDeclaration>
{
    public void Configure(EntityTypeBuilder<QueueDeclaration> builder)
    {
        builder.ToTable("queues", t =>
        {
            // The names the broker definitions and the API accept: no dot and no underscore, so that a queue's
            // dispatch queue (NAME.dispatch) and error queues (NAME_error) can never be another declared queue.
            t.HasCheckConstraint("ck_queues_name", "name ~ '^[a-z][a-z0-9-]{0,62}$'");
            t.HasCheckConstraint("ck_queues_lane", "lane IN ('cpu','io')");

            // The built-in lanes keep their lanes, whatever an operator's SQL says.
            t.HasCheckConstraint("ck_queues_builtin", "name NOT IN ('fleet-cpu','fleet-io') OR lane = CASE name WHEN 'fleet-cpu' THEN 'cpu' ELSE 'io' END");
        });
        builder.HasKey(q => q.Name);
        builder.Property(q => q.Name).HasMaxLength(63);
        builder.Property(q => q.Lane).HasMaxLength(8);
        builder.Property(q => q.DeclaredAt).HasDefaultValueSql("now()");
        builder.Property(q => q.UpdatedAt).HasDefaultValueSql("now()");
    }
}
