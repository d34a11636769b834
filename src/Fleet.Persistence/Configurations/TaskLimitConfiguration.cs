using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class TaskLimitConfiguration : IEntityTypeConfiguration<TaskLimit>
{
    public void Configure(EntityTypeBuilder<TaskLimit> builder)
    {
        builder.ToTable("limits", t =>
        {
            t.HasCheckConstraint("ck_limits_scope", "scope IN ('type','tenant')");
            t.HasCheckConstraint("ck_limits_some", "per_second IS NOT NULL OR max_running IS NOT NULL");
            t.HasCheckConstraint("ck_limits_per_second", "per_second IS NULL OR per_second > 0");
            t.HasCheckConstraint("ck_limits_burst", "burst IS NULL OR burst >= 1");
            t.HasCheckConstraint("ck_limits_max_running", "max_running IS NULL OR max_running >= 1");
            t.HasCheckConstraint("ck_limits_blocked", "blocked_reason IS NULL OR blocked_reason IN ('rate-limit','concurrency-limit')");
        });
        builder.HasKey(l => new { l.Scope, l.Key });
        builder.Property(l => l.Scope).HasMaxLength(10);
        builder.Property(l => l.Key).HasMaxLength(200);
        builder.Property(l => l.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(l => l.UpdatedAt).HasDefaultValueSql("now()");
    }
}
