using Fleet.Persistence.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Persistence.Configurations;

internal sealed class FleetTaskConfiguration : IEntityTypeConfiguration<FleetTask>
{
    public void Configure(EntityTypeBuilder<FleetTask> builder)
    {
        builder.ToTable("tasks", t => t.HasCheckConstraint(
            "ck_tasks_status", "status IN ('queued','running','succeeded','failed','timed_out','cancelled')"));
        builder.HasKey(t => t.Id);
        builder.Property(t => t.Id).ValueGeneratedNever();
        builder.Property(t => t.Payload).HasColumnType("jsonb");
        builder.Property(t => t.Result).HasColumnType("jsonb");
        builder.Property(t => t.MaxAttempts).HasDefaultValue(3);
        builder.Property(t => t.SubmittedAt).HasDefaultValueSql("now()");

        // The API and dashboard list tasks by status, type or batch, newest first, with keyset pagination on
        // (submitted_at, id); each filter gets an index that serves both the filter and the order.
        // (Schema version 2 widened ix_tasks_batch from batch_id alone, so a batch of any size lists without a sort.)
        builder.HasIndex(t => new { t.Status, t.SubmittedAt, t.Id }).HasDatabaseName("ix_tasks_status_submitted");
        builder.HasIndex(t => new { t.Type, t.SubmittedAt, t.Id }).HasDatabaseName("ix_tasks_type_submitted");
        builder.HasIndex(t => new { t.BatchId, t.SubmittedAt, t.Id }).HasDatabaseName("ix_tasks_batch").HasFilter("batch_id IS NOT NULL");

        // Throughput per minute and "latest failures" read recent finished rows.
        builder.HasIndex(t => t.FinishedAt).HasDatabaseName("ix_tasks_finished").HasFilter("finished_at IS NOT NULL");

        // Tasks that ran more than once (retries, crashes, duplicate executions) are rare; this partial index holds
        // only them, so fleet.v_duplicate_executions reads them without scanning the table, and it costs the hot
        // path nothing for the usual single-attempt task. (Schema version 3.)
        builder.HasIndex(t => t.FinishedAt, "ix_tasks_multi_attempt").HasFilter("attempts > 1");

        // The outbox relay looks for committed submissions whose publish was never confirmed; they are few.
        // Delayed tasks are unpublished on purpose until their time: they are left out here (schema version 7) and
        // kept in ix_tasks_due instead, in the order the due relay reads them. A plain task (not_before null) gets
        // the one entry it always had, until its stamp.
        // Dispatched tasks (schema version 9) wait unpublished on purpose too, delayed or not: both indexes leave them
        // to the dispatcher's own below.
        builder.HasIndex(t => t.SubmittedAt).HasDatabaseName("ix_tasks_unpublished").HasFilter("published_at IS NULL AND not_before IS NULL AND NOT dispatched");
        builder.HasIndex(t => t.NotBefore).HasDatabaseName("ix_tasks_due").HasFilter("published_at IS NULL AND not_before IS NOT NULL AND NOT dispatched");

        // The dispatcher's reads, over dispatched tasks only (a plain task is in none of them): what waits, per lane
        // and tenant, highest priority first and, for ageing, oldest first; and what it has published that has not
        // ended yet (outstanding in the broker, or running), per lane, tenant and type, for its limits.
        builder.HasIndex(t => new { t.Queue, t.Tenant, t.Priority, t.SubmittedAt }).HasDatabaseName("ix_tasks_dispatch_waiting")
            .IsDescending(false, false, true, false).HasFilter("dispatched AND published_at IS NULL");
        builder.HasIndex(t => new { t.Queue, t.Tenant, t.SubmittedAt }).HasDatabaseName("ix_tasks_dispatch_age")
            .HasFilter("dispatched AND published_at IS NULL");
        builder.HasIndex(t => new { t.Queue, t.Tenant, t.Type }).HasDatabaseName("ix_tasks_dispatch_active")
            .HasFilter("dispatched AND published_at IS NOT NULL AND status IN ('queued','running')");

        // One task per firing of a schedule, however many API replicas fire it: the scheduler's insert of a firing
        // that already has its task does nothing. Rows of tasks submitted directly (schedule_name null) are not in it.
        builder.HasIndex(t => new { t.ScheduleName, t.ScheduledFor }).HasDatabaseName("ux_tasks_schedule_fire")
            .IsUnique().HasFilter("schedule_name IS NOT NULL");

        // Schema version 10. A uniqueKey holds only while its task is active: the partial unique index admits one
        // queued or running task per key, and a task leaves it as soon as it is final, so the key can be used again.
        builder.Property(t => t.UniqueKey).HasMaxLength(200);
        builder.HasIndex(t => t.UniqueKey).HasDatabaseName("ux_tasks_unique_active").IsUnique()
            .HasFilter("unique_key IS NOT NULL AND status IN ('queued','running')");
        builder.Property(t => t.ProgressNote).HasMaxLength(200);

        // "What was requeued from this task": rare rows only.
        builder.HasIndex(t => t.RequeuedFrom).HasDatabaseName("ix_tasks_requeued_from").HasFilter("requeued_from IS NOT NULL");
    }
}
