using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class QueuePauseConfiguration : IEntityTypeConfiguration<QueuePause>
{
    public void Configure(EntityTypeBuilder<QueuePause> builder)
    {
        builder.ToTable("queue_pauses");
        builder.HasKey(p => p.Queue);
        builder.Property(p => p.Queue).HasMaxLength(200);
        builder.Property(p => p.Reason).HasMaxLength(500);
        builder.Property(p => p.PausedAt).HasDefaultValueSql("now()");
    }
}
