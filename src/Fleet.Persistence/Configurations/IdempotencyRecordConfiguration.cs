using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class IdempotencyRecordConfiguration : IEntityTypeConfiguration<IdempotencyRecord>
{
    public void Configure(EntityTypeBuilder<IdempotencyRecord> builder)
    {
        builder.ToTable("idempotency_keys");
        builder.HasKey(k => k.Key);
        builder.Property(k => k.CreatedAt).HasDefaultValueSql("now()");

        // Keys expire (Api:IdempotencyKeyHours); the cleanup deletes the oldest first.
        builder.HasIndex(k => k.CreatedAt).HasDatabaseName("ix_idempotency_keys_created");
    }
}
