using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Fleet.Persistence;

/// <summary>
/// What PostgreSQL cannot store, made storable (docs/sql.md, "Input PostgreSQL cannot store"):
/// <list type="bullet">
/// <item><b>Text</b> (<c>type</c>, <c>error_type</c>, <c>error_message</c>): NUL and lone UTF-16 surrogates, which
/// <c>text</c> refuses, become U+FFFD, and the text is cut to a length limit.</item>
/// <item><b>JSON</b> (<c>payload</c>, <c>result</c>) that <c>jsonb</c> refuses, or a message body that is not a
/// task at all: <c>{"fleet_unstorable": {"reason", "bytes", "truncated", "base64"}}</c>, the original bytes in
/// base64 (up to <see cref="MaxKeptBytes"/>) with the reason.</item>
/// </list>
/// </summary>
public static class StorableForm
{
    /// <summary>The property that marks a storable stand-in for JSON PostgreSQL could not store.</summary>
    public const string Marker = "fleet_unstorable";

    /// <summary>The most original bytes a stand-in keeps (16 MiB); longer originals keep their start.</summary>
    public const int MaxKeptBytes = 16 * 1024 * 1024;

    /// <summary>The longest <c>error_message</c> stored, in UTF-16 characters, with the note saying it was cut.</summary>
    public const int MaxErrorMessageLength = 8_000;

    /// <summary>The longest <c>type</c> or <c>error_type</c> stored.</summary>
    public const int MaxNameLength = 200;

    /// <summary>
    /// <paramref name="text"/> as <c>text</c> can store it: the same instance when it already is (the usual case,
    /// checked with two vectorized scans), else with NUL and lone surrogates replaced by U+FFFD and, when longer than
    /// <paramref name="maxLength"/> characters, cut to that length including a note of the full length.
    /// </summary>
    public static string? Text(string? text, int maxLength)
    {
        if (text is null
            || (text.Length <= maxLength && !text.AsSpan().Contains('\0') && !text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF')))
        {
            return text;
        }

        var note = text.Length > maxLength ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $" [cut: {text.Length} characters in all]") : "";
        var room = Math.Max(0, maxLength - note.Length);
        var kept = new StringBuilder(Math.Min(text.Length, maxLength));
        for (var i = 0; i < text.Length && kept.Length < room; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (kept.Length + 2 > room)
                {
                    break;
                }

                kept.Append(c).Append(text[++i]);
            }
            else
            {
                kept.Append(c == '\0' || char.IsSurrogate(c) ? '\uFFFD' : c);
            }
        }

        return kept.Append(note).ToString();
    }

    /// <summary>The storable stand-in for JSON text that PostgreSQL refused.</summary>
    public static string Json(string reason, string original) => Json(reason, Encoding.UTF8.GetBytes(original));

    /// <summary>The storable stand-in for <paramref name="original"/> bytes (JSON PostgreSQL refused, or a body that is not a task).</summary>
    public static string Json(string reason, ReadOnlySpan<byte> original)
    {
        var kept = original.Length > MaxKeptBytes ? original[..MaxKeptBytes] : original;
        var buffer = new ArrayBufferWriter<byte>((kept.Length / 3 * 4) + 512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject(Marker);
            json.WriteString("reason", Text(reason, MaxErrorMessageLength));
            json.WriteNumber("bytes", original.Length);
            json.WriteBoolean("truncated", kept.Length < original.Length);
            json.WriteBase64String("base64", kept);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
