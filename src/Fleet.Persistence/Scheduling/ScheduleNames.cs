using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Fleet.Persistence.Scheduling;

/// <summary>What a schedule may be called, and the id of the task one firing creates.</summary>
public static partial class ScheduleNames
{
    public const int MaxLength = 100;

    public const string Rule = "1 to 100 letters, digits, '-', '_' or '.'";

    /// <summary>Names fit in a URL path segment and a shell argument as they are.</summary>
    public static bool IsValid(string? name) => name is not null && NamePattern().IsMatch(name);

    /// <summary>
    /// The task id of the firing of <paramref name="name"/> at <paramref name="fireTime"/>: a name-based UUID (version
    /// 8, RFC 9562, from SHA-256), so that the same firing repeated (a crash between the insert and the schedule's
    /// update, two API replicas, a restart) finds its task already there instead of creating another.
    /// </summary>
    public static Guid TaskId(string name, DateTimeOffset fireTime)
    {
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"fleet:schedule:{name}:{fireTime.UtcTicks}"), hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true);
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,100}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();
}
