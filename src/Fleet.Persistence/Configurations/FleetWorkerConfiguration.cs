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

        // Defaults, so that rows written before the process lane existed (and writers that do not know it) read as
        // a worker without one.
        builder.Property(w => w.ProcessSlots).HasDefaultValue(0);
        builder.Property(w => w.ProcessBusy).HasDefaultValue(0);
        builder.Property(w => w.ProcessChildrenStarted).HasDefaultValue(0L);
        builder.Property(w => w.ProcessKills).HasDefaultValue(0L);
        builder.Property(w => w.ProcessDeaths).HasDefaultValue(0L);
    }
}
