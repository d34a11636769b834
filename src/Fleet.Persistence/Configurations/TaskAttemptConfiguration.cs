using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class TaskAttemptConfiguration : IEntityTypeConfiguration<TaskAttempt>
{
    public void Configure(EntityTypeBuilder<TaskAttempt> builder)
    {
        builder.ToTable("task_attempts");
        builder.HasKey(a => new { a.TaskId, a.Attempt });

        // No foreign key to fleet.tasks on purpose: attempts are written in the hot path in bulk, and retention
        // deletes both tables in batches; a cascade would turn every task delete into an attempts scan.
        builder.HasIndex(a => new { a.WorkerId, a.StartedAt }).HasDatabaseName("ix_task_attempts_worker_started");
    }
}
