using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Fleet.Client;

namespace Fleet.Api.Requeue;

/// <summary>
/// Turns the body of <c>POST /tasks/requeue</c> into a <see cref="RequeueFilter"/>, collecting every problem with
/// its JSON path (as <c>TaskRequestReader</c> does for submissions); the rules themselves are
/// <see cref="RequeueFilter.Check"/>'s, shared with <c>fleet requeue</c>.
/// </summary>
internal static partial class RequeueFilterReader
{
    private static readonly string[] Fields = ["status", "type", "batchId", "finishedSince", "finishedUntil", "limit", "again"];

    /// <summary>The time format <c>TaskRequestReader</c> takes for notBefore: RFC 3339 with seconds and an offset or Z, nothing the server's zone could change.</summary>
    [GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?([Zz]|[+-][0-9]{2}:[0-9]{2})\z", RegexOptions.CultureInvariant)]
    private static partial Regex Rfc3339();

    public static (RequeueFilter? Filter, IResult? Error) Read(JsonElement body)
    {
        try
        {
            return ReadObject(body);
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json refuses to decode a lone UTF-16 surrogate escape in a name or a string.
            return (null, Problems.BadRequest("Not Unicode text", "The request body contains a lone UTF-16 surrogate escape, which is not Unicode text."));
        }
    }

    private static (RequeueFilter? Filter, IResult? Error) ReadObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            return (null, Problems.BadRequest("Not a JSON object", "The request body must be a JSON object with at least \"status\", e.g. {\"status\": \"failed\"}."));
        }

        var errors = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        void Add(string path, string problem)
        {
            if (!errors.TryGetValue(path, out var list))
            {
                errors[path] = list = [];
            }

            list.Add(problem);
        }

        List<string> statuses = [];
        string? type = null;
        Guid? batchId = null;
        DateTimeOffset? since = null, until = null;
        var limit = RequeueFilter.DefaultLimit;
        var again = false;
        foreach (var property in body.EnumerateObject())
        {
            var value = property.Value;
            switch (property.Name)
            {
                case "status":
                    ReadStatuses(value, statuses, Add);
                    break;
                case "type":
                    if (value.ValueKind == JsonValueKind.String)
                    {
                        type = value.GetString();
                    }
                    else if (value.ValueKind != JsonValueKind.Null)
                    {
                        Add("type", "Must be a string, the task type.");
                    }

                    break;
                case "batchId":
                    if (value.ValueKind == JsonValueKind.String && Guid.TryParse(value.GetString(), out var batch))
                    {
                        batchId = batch;
                    }
                    else if (value.ValueKind != JsonValueKind.Null)
                    {
                        Add("batchId", "Must be a UUID.");
                    }

                    break;
                case "finishedSince":
                    since = ReadTime(value, "finishedSince", Add);
                    break;
                case "finishedUntil":
                    until = ReadTime(value, "finishedUntil", Add);
                    break;
                case "limit":
                    if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n))
                    {
                        limit = n;
                    }
                    else if (value.ValueKind != JsonValueKind.Null)
                    {
                        Add("limit", $"Must be an integer from 1 to {RequeueFilter.MaxLimit}.");
                    }

                    break;
                case "again":
                    if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        again = value.GetBoolean();
                    }
                    else if (value.ValueKind != JsonValueKind.Null)
                    {
                        Add("again", "Must be true or false.");
                    }

                    break;
                default:
                    Add(property.Name, $"Unknown field; a requeue filter has {string.Join(", ", Fields)}.");
                    break;
            }
        }

        var filter = new RequeueFilter
        {
            Statuses = statuses, Type = type, BatchId = batchId, FinishedSince = since, FinishedUntil = until, Limit = limit, Again = again,
        };

        // The filter's own rules, on the fields that were readable (a field already refused above is not refused twice).
        foreach (var (field, problem) in filter.Check())
        {
            if (!errors.Keys.Any(k => k == field || k.StartsWith(field + "[", StringComparison.Ordinal)))
            {
                Add(field, problem);
            }
        }

        return errors.Count == 0
            ? (filter, null)
            : (null, Problems.Invalid("Invalid requeue filter", errors.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal)));
    }

    /// <summary><c>"failed"</c> or <c>["failed", "timed_out"]</c>.</summary>
    private static void ReadStatuses(JsonElement value, List<string> statuses, Action<string, string> add)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            statuses.Add(value.GetString()!);
            return;
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            add("status", $"Must be a final state or an array of them ({string.Join(", ", RequeueFilter.FinalStates)}).");
            return;
        }

        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String && RequeueFilter.FinalStates.Contains(item.GetString()))
            {
                statuses.Add(item.GetString()!);
            }
            else
            {
                add($"status[{index}]", $"Must be a final state: {string.Join(", ", RequeueFilter.FinalStates)}; only a final task can be requeued.");
            }

            index++;
        }
    }

    private static DateTimeOffset? ReadTime(JsonElement value, string path, Action<string, string> add)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        var text = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        if (text is null || !Rfc3339().IsMatch(text)
            || !DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
        {
            add(path, "Must be an RFC 3339 time with an offset or Z, e.g. \"2026-12-04T18:00:00Z\".");
            return null;
        }

        return time.ToUniversalTime();
    }
}
