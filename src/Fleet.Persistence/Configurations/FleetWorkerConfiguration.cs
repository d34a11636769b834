using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class FleetWorkerConfiguration : IEntityTypeConfiguration<FleetWorker>
{
    public void Configure(EntityTypeBuilder<FleetWorker> builder)
    {
        builder.ToTable("workers");
        builder.HasKey(w => w.Id);
        builder.HasIndex(w => w.LastSeenAt).HasDatabaseName("ix_workers_last_seen");
        builder.Property(w => w.HeldTasks).HasDefaultValueSql("'{}'::uuid[]");
    }
}
