using System.Text.RegularExpressions;

namespace Fleet.Persistence.Scheduling;

/// <summary>What a schedule may be called, and the id of the task one firing creates.</summary>
public static partial class ScheduleNames
{
    public const int MaxLength = 100;

    public const string Rule = "1 to 100 letters, digits, '-', '_' or '.', and not '.' or '..'";

    /// <summary>Names fit in a URL path segment and a shell argument as they are ('.' and '..' would not: a client
    /// resolves them away in a path).</summary>
    public static bool IsValid(string? name) => name is not null && NamePattern().IsMatch(name);

    /// <summary>
    /// The task id of the firing of <paramref name="name"/> at <paramref name="fireTime"/>: a name-based UUID (version
    /// 8, RFC 9562, from SHA-256), so that the same firing repeated (a crash between the insert and the schedule's
    /// update, two API replicas, a restart) finds its task already there instead of creating another.
    /// </summary>
    public static Guid TaskId(string name, DateTimeOffset fireTime)
    {
        ArgumentNullException.ThrowIfNull(name);
        return NameBasedId.From($"fleet:schedule:{name}:{fireTime.UtcTicks}");
    }

    [GeneratedRegex(@"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();
}
