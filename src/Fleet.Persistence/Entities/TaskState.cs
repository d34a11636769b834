namespace Fleet.Persistence.Entities;

/// <summary>
/// A task's state, stored as text in <c>fleet.tasks.status</c> (pinned values, see docs/schema.md).
/// <c>queued</c> and <c>running</c> are open; the other four are final and never change once written.
/// </summary>
public static class TaskState
{
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string TimedOut = "timed_out";
    public const string Cancelled = "cancelled";

    public static IReadOnlyList<string> All { get; } = [Queued, Running, Succeeded, Failed, TimedOut, Cancelled];

    public static IReadOnlyList<string> Final { get; } = [Succeeded, Failed, TimedOut, Cancelled];

    public static bool IsFinal(string state) => state is Succeeded or Failed or TimedOut or Cancelled;
}
