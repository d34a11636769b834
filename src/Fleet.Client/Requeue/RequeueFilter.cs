namespace Fleet.Client;

/// <summary>
/// Which final tasks a bulk requeue runs again (<see cref="TaskRequeuer.RequeueAsync(RequeueFilter, SubmitOptions?, CancellationToken)"/>):
/// the API's <c>POST /tasks/requeue</c> body and <c>fleet requeue --status</c> both build one, and both check it
/// with <see cref="Check"/>, so the rules live here once.
/// </summary>
public sealed record RequeueFilter
{
    public const int DefaultLimit = 1_000;

    /// <summary>The most tasks one bulk requeue takes: one submission (one transaction, one publish) of this many tasks.</summary>
    public const int MaxLimit = 10_000;

    /// <summary>The final states, the only ones a task can be requeued from (<c>fleet.tasks.status</c>).</summary>
    public static IReadOnlyList<string> FinalStates { get; } = ["succeeded", "failed", "timed_out", "cancelled"];

    /// <summary>One or more of <see cref="FinalStates"/>; required.</summary>
    public IReadOnlyList<string> Statuses { get; init; } = [];

    public string? Type { get; init; }

    public Guid? BatchId { get; init; }

    /// <summary>Tasks finished at or after this time.</summary>
    public DateTimeOffset? FinishedSince { get; init; }

    /// <summary>Tasks finished before this time.</summary>
    public DateTimeOffset? FinishedUntil { get; init; }

    /// <summary>At most this many tasks, the earliest finished first (1 to <see cref="MaxLimit"/>).</summary>
    public int Limit { get; init; } = DefaultLimit;

    /// <summary>
    /// Also take tasks that were requeued before (a task whose id is some row's <c>requeued_from</c>). Off by default,
    /// so that the same bulk requeue run twice does the work once.
    /// </summary>
    public bool Again { get; init; }

    /// <summary>
    /// The problems of this filter, by field name as the API's body spells them (<c>status</c>, <c>type</c>,
    /// <c>finishedUntil</c>, <c>limit</c>); empty when it can run.
    /// </summary>
    public IReadOnlyList<(string Field, string Problem)> Check()
    {
        var problems = new List<(string, string)>();
        if (Statuses is null || Statuses.Count == 0)
        {
            problems.Add(("status", $"Required: one or more final states ({string.Join(", ", FinalStates)})."));
        }
        else if (Statuses.Where(s => !FinalStates.Contains(s)).ToList() is { Count: > 0 } open)
        {
            problems.Add(("status", $"Only final tasks can be requeued ({string.Join(", ", FinalStates)}), not {string.Join(", ", open.Select(s => $"'{s}'"))}."));
        }

        if (Type is not null && (string.IsNullOrWhiteSpace(Type) || Type.Length > 200 || Type.Any(char.IsControl)))
        {
            problems.Add(("type", "Must be a task type: 1 to 200 characters, without control characters."));
        }

        if (FinishedSince is { } since && FinishedUntil is { } until && until <= since)
        {
            problems.Add(("finishedUntil", "Must be later than finishedSince."));
        }

        if (Limit is < 1 or > MaxLimit)
        {
            problems.Add(("limit", $"Must be from 1 to {MaxLimit}."));
        }

        return problems;
    }
}
