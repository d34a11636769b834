namespace Fleet.Persistence.Limits;

/// <summary>
/// What a limit of <c>fleet.limits</c> may be, checked the same way by the API (each problem a 400 with its field)
/// and by <c>fleet limit set</c>: a scope, a key that fits the column and a URL path, and at least one of a rate
/// and a concurrency cap, each within bounds that no real fleet reaches.
/// </summary>
public static class LimitRules
{
    public const string TypeScope = "type";

    public const string TenantScope = "tenant";

    /// <summary>The two scopes (<c>fleet.limits.scope</c>).</summary>
    public static IReadOnlyList<string> Scopes { get; } = [TypeScope, TenantScope];

    /// <summary>The longest key, in characters (the column's length; a task's <c>tenant</c> has the same bound).</summary>
    public const int MaxKeyLength = 200;

    /// <summary>The largest per-second rate, burst and running cap.</summary>
    public const int MaxValue = 1_000_000;

    public const string KeyRule = "1 to 200 characters, not only white space, no control characters";

    public static bool IsScope(string? scope) => scope is TypeScope or TenantScope;

    /// <summary>Whether <paramref name="key"/> can name a task type or a tenant: <see cref="KeyRule"/>.</summary>
    public static bool IsValidKey(string? key) =>
        !string.IsNullOrWhiteSpace(key) && key.Length <= MaxKeyLength && !key.Any(char.IsControl);

    /// <summary>
    /// The problems of a limit's numbers, by field name as the API's body spells them (<c>perSecond</c>, <c>burst</c>,
    /// <c>maxRunning</c>); empty when it can be stored.
    /// </summary>
    public static IReadOnlyList<(string Field, string Problem)> Check(double? perSecond, int? burst, int? maxRunning)
    {
        var problems = new List<(string, string)>();
        if (perSecond is { } rate && !(rate > 0 && rate <= MaxValue))
        {
            problems.Add(("perSecond", "Must be a number of tasks per second above 0 and at most 1,000,000 (fractions allowed: 0.5 is one every 2 s)."));
        }

        if (burst is { } size && size is < 1 or > MaxValue)
        {
            problems.Add(("burst", "Must be an integer from 1 to 1,000,000."));
        }
        else if (burst is not null && perSecond is null)
        {
            problems.Add(("burst", "A burst belongs to a rate: give perSecond with it."));
        }

        if (maxRunning is { } running && running is < 1 or > MaxValue)
        {
            problems.Add(("maxRunning", "Must be an integer from 1 to 1,000,000."));
        }

        if (perSecond is null && maxRunning is null)
        {
            problems.Add(("perSecond", "Give perSecond, maxRunning or both: a limit without either limits nothing."));
        }

        return problems;
    }
}
