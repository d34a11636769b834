using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace Fleet.Api.Queries;

/// <summary>
/// The position after the last item of a page: its <c>(submitted_at, id)</c>, the key the listing is ordered by.
/// On the wire it is opaque (base64url), so clients pass it back as is and the encoding can change later.
/// </summary>
public readonly record struct TaskCursor(DateTimeOffset SubmittedAt, Guid Id)
{
    private const string Version = "1";

    public string Encode()
    {
        // Microseconds: PostgreSQL's timestamp precision, so the value round-trips exactly.
        var micros = (SubmittedAt.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;
        var text = string.Create(CultureInfo.InvariantCulture, $"{Version}:{micros}:{Id:N}");
        return Base64Url.EncodeToString(Encoding.ASCII.GetBytes(text));
    }

    public static bool TryDecode(string? value, out TaskCursor cursor)
    {
        cursor = default;
        if (string.IsNullOrEmpty(value) || value.Length > 128)
        {
            return false;
        }

        byte[] bytes;
        try
        {
            bytes = Base64Url.DecodeFromChars(value);
        }
        catch (FormatException)
        {
            return false;
        }

        var parts = Encoding.ASCII.GetString(bytes).Split(':');
        if (parts.Length != 3 || parts[0] != Version ||
            !long.TryParse(parts[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var micros) ||
            !Guid.TryParseExact(parts[2], "N", out var id))
        {
            return false;
        }

        var ticks = DateTimeOffset.UnixEpoch.UtcTicks + (micros * 10);
        if (ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks)
        {
            return false;
        }

        cursor = new TaskCursor(new DateTimeOffset(ticks, TimeSpan.Zero), id);
        return true;
    }
}
