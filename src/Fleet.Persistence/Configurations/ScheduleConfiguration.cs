using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class ScheduleConfiguration : IEntityTypeConfiguration<Schedule>
{
    public void Configure(EntityTypeBuilder<Schedule> builder)
    {
        builder.ToTable("schedules");
        builder.HasKey(s => s.Name);
        builder.Property(s => s.Name).HasMaxLength(100);
        builder.Property(s => s.TimeZone).HasDefaultValue("UTC");
        builder.Property(s => s.Task).HasColumnType("jsonb");

        // The firing loop's "what is due" read; paused schedules have no next fire time and stay out of it.
        builder.HasIndex(s => s.NextFireAt).HasDatabaseName("ix_schedules_due").HasFilter("NOT paused");
    }
}
