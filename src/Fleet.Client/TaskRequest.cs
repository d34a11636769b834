using System.Text.Json;

namespace Fleet.Client;

/// <summary>One task to submit. Only <see cref="Type"/> and <see cref="Payload"/> are required.</summary>
public sealed record TaskRequest(string Type, JsonElement Payload)
{
    /// <summary>The id to use; a new time-ordered UUID when null. Resubmitting an id never yields a second result.</summary>
    public Guid? TaskId { get; init; }

    /// <summary>The queue to send to; when null, <see cref="FleetClientOptions.CpuTypes"/> decides between the lanes.</summary>
    public string? Queue { get; init; }

    public int Priority { get; init; }

    /// <summary>
    /// The time limit of one execution in seconds, 1 to <see cref="Fleet.Contracts.TaskLimits.MaxTimeoutSeconds"/>
    /// (the API refuses more); null for the worker's default. A worker whose <c>Worker:MaxTimeoutSeconds</c> is
    /// lower runs the task for that long, and its timeout error says so.
    /// </summary>
    public int? TimeoutSeconds { get; init; }

    public int? MaxAttempts { get; init; }

    public Guid? BatchId { get; init; }

    /// <summary>
    /// The earliest time the task may start (a delayed task). A time ahead of the submit keeps the task
    /// <c>queued</c> in PostgreSQL, unpublished, until the due relay publishes it at that time; a time already
    /// past publishes it at once. Not together with <see cref="DelaySeconds"/>.
    /// </summary>
    public DateTimeOffset? NotBefore { get; init; }

    /// <summary>
    /// The delay in seconds from the submit, turned into <see cref="NotBefore"/> (the submit time plus this) when
    /// the task is submitted. Not together with <see cref="NotBefore"/>.
    /// </summary>
    public double? DelaySeconds { get; init; }

    /// <summary>The tenant the task belongs to; stored in <c>tasks.tenant</c> for queries.</summary>
    public string? Tenant { get; init; }

    /// <summary>
    /// The schedule whose firing created this task (<c>tasks.schedule_name</c>); set by the scheduler, not by
    /// producers. With <see cref="ScheduledFor"/> it identifies the firing: a second task for the same firing is
    /// neither stored nor published.
    /// </summary>
    public string? ScheduleName { get; init; }

    /// <summary>The fire time of the schedule that created this task (<c>tasks.scheduled_for</c>).</summary>
    public DateTimeOffset? ScheduledFor { get; init; }

    /// <summary>
    /// The steps of a chain that run after this task, one after another, each only once the one before it succeeded;
    /// a step that ends any other way ends the rest <c>cancelled</c> (<c>ChainStopped</c>). All steps are stored at
    /// submit (their ids are in <see cref="SubmitResult.Steps"/>) and wait in PostgreSQL. A step may not have steps of
    /// its own, a time (<see cref="NotBefore"/>, <see cref="DelaySeconds"/>) or a <see cref="UniqueKey"/>.
    /// </summary>
    public IReadOnlyList<TaskRequest>? Then { get; init; }

    /// <summary>
    /// While a task with this key is <c>queued</c> or <c>running</c>, submitting another one with it creates nothing
    /// and returns that task's id (<see cref="SubmitResult.Existing"/>); once it is final, the key is free again.
    /// 1 to 200 characters.
    /// </summary>
    public string? UniqueKey { get; init; }

    /// <summary>The final task this request runs again (<c>tasks.requeued_from</c>); set by requeue, not by producers.</summary>
    public Guid? RequeuedFrom { get; init; }

    /// <summary>The batch whose end this task follows (<c>tasks.after_batch_id</c>); set for a batch's onComplete task, not by producers.</summary>
    public Guid? AfterBatchId { get; init; }

    /// <summary>Builds a request whose payload is <paramref name="payload"/> serialized with System.Text.Json.</summary>
    public static TaskRequest Create<T>(string type, T payload) => new(type, JsonSerializer.SerializeToElement(payload));
}
