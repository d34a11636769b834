using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class BatchCallbackConfiguration : IEntityTypeConfiguration<BatchCallback>
{
    public void Configure(EntityTypeBuilder<BatchCallback> builder)
    {
        builder.ToTable("batch_callbacks");
        builder.HasKey(c => c.BatchId);
        builder.Property(c => c.BatchId).ValueGeneratedNever();
        builder.Property(c => c.Task).HasColumnType("jsonb");
        builder.Property(c => c.CreatedAt).HasDefaultValueSql("now()");

        // The watcher reads only the callbacks still to fire.
        builder.HasIndex(c => c.CreatedAt).HasDatabaseName("ix_batch_callbacks_pending").HasFilter("fired_at IS NULL");
    }
}
