using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Submission;

/// <summary>
/// Turns submitted JSON into <see cref="TaskRequest"/>s, collecting every problem with the JSON path it belongs
/// to, so that one answer lists what to fix and nothing is stored unless everything is valid.
/// </summary>
public sealed partial class TaskRequestReader(TaskTypeCatalog catalog, QueueCatalog queues, IOptions<ApiOptions> options)
{
    /// <summary>Enough to fix a systematic mistake; a 10,000-task batch must not produce a 10,000-entry answer.</summary>
    private const int MaxReportedErrors = 50;

    private static readonly string[] Fields = ["type", "payload", "priority", "timeoutSeconds", "maxAttempts", "queue", "notBefore", "delaySeconds", "tenant", "then", "uniqueKey"];

    /// <summary>Where a task request sits, which decides what it may carry.</summary>
    private enum Place
    {
        /// <summary>A task of POST /tasks or of a batch: anything.</summary>
        Task,

        /// <summary>A step in then: starts after the step before it; no time, no steps, no uniqueKey.</summary>
        Step,

        /// <summary>A batch's onComplete: starts when the batch ends; no time, no steps, no uniqueKey.</summary>
        Callback,
    }

    /// <summary>The longest <c>tenant</c>, in characters: a tenant is a key of <c>fleet.limits</c>, whose keys have this bound.</summary>
    public const int MaxTenantLength = Fleet.Persistence.Limits.LimitRules.MaxKeyLength;

    /// <summary>
    /// RFC 3339's date-time: a full date and time with seconds, optional fraction, and an offset or Z. Anything looser
    /// (a date alone, no offset) would be read in the server's time zone, so it is refused.
    /// </summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?([Zz]|[+-][0-9]{2}:[0-9]{2})\z", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex Rfc3339();

    private readonly ApiOptions _options = options.Value;

    /// <summary>Reads the body of <c>POST /tasks</c>: the request, or the problem to answer.</summary>
    public (TaskRequest? Request, IResult? Error) ReadTask(JsonElement body)
    {
        var errors = new Errors();
        if (body.ValueKind != JsonValueKind.Object)
        {
            return (null, Problems.BadRequest("Not a JSON object", $"The request body must be a JSON object with at least \"type\", not {Describe(body)}."));
        }

        var request = Read(body, "", errors, Place.Task);
        return errors.Count == 0 ? (request, null) : (null, errors.ToProblem(catalog));
    }

    /// <summary>Reads the body of <c>POST /tasks/batch</c>, <c>{"tasks": [...]}</c>.</summary>
    public (IReadOnlyList<TaskRequest>? Requests, TaskRequest? OnComplete, IResult? Error) ReadBatch(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            return (null, null, Problems.BadRequest("Not a JSON object", $"The request body must be a JSON object {{\"tasks\": [...]}}, not {Describe(body)}."));
        }

        var errors = new Errors();
        JsonElement tasks = default;
        TaskRequest? onComplete = null;
        foreach (var property in body.EnumerateObject())
        {
            var name = NameOf(property);
            if (name == "tasks")
            {
                tasks = property.Value;
            }
            else if (name == "onComplete")
            {
                if (property.Value.ValueKind != JsonValueKind.Object)
                {
                    errors.Add(name, $"Must be a task request (a JSON object with at least \"type\"), not {Describe(property.Value)}.");
                }
                else
                {
                    onComplete = Read(property.Value, "onComplete.", errors, Place.Callback);
                }
            }
            else
            {
                errors.Add(name, "Unknown field; a batch body has \"tasks\" and \"onComplete\".");
            }
        }

        if (tasks.ValueKind != JsonValueKind.Array)
        {
            errors.Add("tasks", tasks.ValueKind == JsonValueKind.Undefined ? "Required: an array of tasks." : $"Must be an array of tasks, not {Describe(tasks)}.");
            return (null, null, errors.ToProblem(catalog));
        }

        var count = tasks.GetArrayLength();
        if (count > _options.MaxBatchTasks)
        {
            return (null, null, Problems.TooLarge(
                $"A batch holds at most {_options.MaxBatchTasks} tasks; this one has {count}. Split it into several batches.",
                new Dictionary<string, object?> { ["maxTasks"] = _options.MaxBatchTasks, ["tasks"] = count }));
        }

        if (count == 0)
        {
            errors.Add("tasks", "A batch needs at least one task.");
            return (null, null, errors.ToProblem(catalog));
        }

        var requests = new List<TaskRequest>(count);
        var index = 0;
        foreach (var item in tasks.EnumerateArray())
        {
            var path = $"tasks[{index++}]";

            // Each task obeys the single-task limit, so a batch cannot smuggle in a payload that POST /tasks refuses.
            var size = JsonMarshal.GetRawUtf8Value(item).Length;
            if (size > _options.MaxTaskBytes)
            {
                return (null, null, Problems.TooLarge(
                    $"{path} is {size} bytes; one task may be at most {_options.MaxTaskBytes} bytes.",
                    new Dictionary<string, object?> { ["limitBytes"] = _options.MaxTaskBytes, ["task"] = index - 1 }));
            }

            if (item.ValueKind != JsonValueKind.Object)
            {
                errors.Add(path, $"Must be a JSON object with at least \"type\", not {Describe(item)}.");
                continue;
            }

            var request = Read(item, path + ".", errors, Place.Task);
            if (request is not null)
            {
                requests.Add(request);
            }
        }

        return errors.Count == 0 ? (requests, onComplete, null) : (null, null, errors.ToProblem(catalog));
    }

    /// <summary>
    /// SHA-256 of the endpoint and the body in compact form, so that an identical retry matches whatever its
    /// whitespace, and the same key sent to another endpoint does not.
    /// </summary>
    public static string RequestHash(string endpoint, JsonElement body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(endpoint + "\n"));
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            body.WriteTo(writer);
        }

        hash.AppendData(buffer.WrittenSpan);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private TaskRequest? Read(JsonElement item, string prefix, Errors errors, Place place)
    {
        List<TaskRequest>? then = null;
        var sawThen = false;
        string? uniqueKey = null;
        string? type = null;
        JsonElement payload = default;
        int? priority = null, timeoutSeconds = null, maxAttempts = null;
        string? queue = null;
        DateTimeOffset? notBefore = null;
        double? delaySeconds = null;
        string? tenant = null;
        var before = errors.Count;
        var sawType = false;
        foreach (var property in item.EnumerateObject())
        {
            var name = NameOf(property);
            var path = prefix + name;
            var value = property.Value;
            switch (name)
            {
                case "type":
                    sawType = true;
                    var typeText = value.ValueKind == JsonValueKind.String ? TextOf(value) : null;
                    if (string.IsNullOrWhiteSpace(typeText))
                    {
                        errors.Add(path, value.ValueKind == JsonValueKind.String && typeText is null ? LoneSurrogate : "Must be a non-empty string.");
                    }
                    else if (!catalog.IsKnown(typeText))
                    {
                        errors.AddUnknownType(path, typeText);
                    }
                    else
                    {
                        type = typeText;
                    }

                    break;
                case "payload":
                    if (value.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                    {
                        errors.Add(path, $"Must be a JSON object, not {Describe(value)}.");
                    }
                    else if (UnstorableText(value, path) is { } where)
                    {
                        errors.Add(where.Path, where.Problem);
                    }

                    payload = value;
                    break;
                case "priority":
                    // The dispatcher orders by it (higher first); the submitter refuses anything outside, so it is a 400 here.
                    priority = ReadInt(value, path, TaskLimits.MinPriority, TaskLimits.MaxPriority, errors);
                    break;
                case "timeoutSeconds":
                    // No worker runs a task longer (a held message must be acknowledged within the broker's
                    // consumer_timeout): a longer limit is refused here rather than cut short in the worker.
                    timeoutSeconds = ReadInt(value, path, 1, TaskLimits.MaxTimeoutSeconds, errors);
                    break;
                case "maxAttempts":
                    maxAttempts = ReadInt(value, path, 1, 100, errors);
                    break;
                case "queue":
                    if (value.ValueKind == JsonValueKind.Null)
                    {
                        break;
                    }

                    var queueText = value.ValueKind == JsonValueKind.String ? TextOf(value) : null;
                    if (queueText is null || !queues.Contains(queueText))
                    {
                        errors.Add(path, $"Must be one of {queues} (the built-in lanes and the queues declared in Api:Queues).");
                    }
                    else
                    {
                        queue = queueText;
                    }

                    break;
                case "notBefore":
                    notBefore = ReadTime(value, path, errors);
                    break;
                case "delaySeconds":
                    delaySeconds = ReadDelay(value, path, errors);
                    break;
                case "tenant":
                    tenant = ReadTenant(value, path, errors);
                    break;
                case "then":
                    sawThen = true;
                    then = ReadThen(value, path, errors, place);
                    break;
                case "uniqueKey":
                    uniqueKey = ReadUniqueKey(value, path, errors);
                    break;
                default:
                    errors.Add(path, $"Unknown field; a task has {string.Join(", ", Fields)}.");
                    break;
            }
        }

        // Seen in the loop, not asked with TryGetProperty("type"), which decodes every name again and throws on a lone
        // surrogate escape in one.
        if (!sawType)
        {
            errors.Add(prefix + "type", "Required: the task type, e.g. \"sha256\".");
        }

        if (notBefore is not null && delaySeconds is not null)
        {
            errors.Add(prefix + "delaySeconds", "Give notBefore or delaySeconds, not both.");
        }

        if (place != Place.Task)
        {
            // A step starts when the step before it succeeds, a callback when its batch ends: neither has a time of its
            // own, steps of its own, or a key that could make it vanish into another task.
            var what = place == Place.Step ? "a step in then starts when the step before it succeeds" : "onComplete starts when its batch ends";
            foreach (var (field, given) in new[] { ("notBefore", notBefore is not null), ("delaySeconds", delaySeconds is not null), ("uniqueKey", uniqueKey is not null) })
            {
                if (given)
                {
                    errors.Add(prefix + field, $"Not allowed here: {what}.");
                }
            }
        }
        else if (sawThen && uniqueKey is not null)
        {
            errors.Add(prefix + "uniqueKey", "Not with then: a chain cannot be unique.");
        }

        if (errors.Count > before || type is null)
        {
            return null;
        }

        // The payload must outlive the request's JsonDocument: it is serialized again when the message is sent.
        var payloadValue = payload.ValueKind == JsonValueKind.Object ? payload.Clone() : EmptyObject;
        return new TaskRequest(type, payloadValue)
        {
            Priority = priority ?? 0,
            TimeoutSeconds = timeoutSeconds,
            MaxAttempts = maxAttempts,
            Queue = queue ?? (catalog.CpuTypes.Contains(type) ? TaskQueues.Cpu : TaskQueues.Io),
            NotBefore = notBefore,
            DelaySeconds = delaySeconds,
            Tenant = tenant,
            Then = then is { Count: > 0 } ? then : null,
            UniqueKey = uniqueKey,
        };
    }

    /// <summary>The steps of a chain: 1 to <see cref="TaskLimits.MaxChainSteps"/> task requests, none with steps of its own.</summary>
    private List<TaskRequest>? ReadThen(JsonElement value, string path, Errors errors, Place place)
    {
        if (place != Place.Task)
        {
            errors.Add(path, place == Place.Step
                ? "Not allowed in a step: list every step in the first task's then."
                : "Not allowed in onComplete: it is one task.");
            return null;
        }

        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() is 0 or > TaskLimits.MaxChainSteps)
        {
            errors.Add(path, $"Must be an array of 1 to {TaskLimits.MaxChainSteps} task requests.");
            return null;
        }

        var steps = new List<TaskRequest>(value.GetArrayLength());
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var itemPath = $"{path}[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                errors.Add(itemPath, $"Must be a JSON object with at least \"type\", not {Describe(item)}.");
            }
            else if (Read(item, itemPath + ".", errors, Place.Step) is { } step)
            {
                steps.Add(step);
            }
        }

        return steps;
    }

    /// <summary>1 to <see cref="TaskLimits.MaxUniqueKeyLength"/> characters, no control characters (it is stored in <c>tasks.unique_key</c>).</summary>
    private static string? ReadUniqueKey(JsonElement value, string path, Errors errors)
    {
        var text = value.ValueKind == JsonValueKind.String ? TextOf(value) : null;
        if (text is null || text.Length is 0 or > TaskLimits.MaxUniqueKeyLength || text.Any(char.IsControl))
        {
            errors.Add(path, value.ValueKind == JsonValueKind.String && text is null
                ? LoneSurrogate
                : $"Must be a string of 1 to {TaskLimits.MaxUniqueKeyLength} characters without control characters.");
            return null;
        }

        return text;
    }

    /// <summary>An RFC 3339 time with an offset (stored in UTC), at most <see cref="TaskLimits.MaxDelaySeconds"/> ahead; a past time means "now".</summary>
    private static DateTimeOffset? ReadTime(JsonElement value, string path, Errors errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        var text = value.ValueKind == JsonValueKind.String ? TextOf(value) : null;
        if (text is null || !Rfc3339().IsMatch(text)
            || !DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
        {
            errors.Add(path, "Must be an RFC 3339 time with an offset or Z, e.g. \"2026-12-24T18:00:00Z\".");
            return null;
        }

        if (time > DateTimeOffset.UtcNow.AddSeconds(TaskLimits.MaxDelaySeconds))
        {
            errors.Add(path, $"Must be at most {TaskLimits.MaxDelaySeconds / 86_400} days ahead.");
            return null;
        }

        return time.ToUniversalTime();
    }

    private static double? ReadDelay(JsonElement value, string path, Errors errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var seconds) || !(seconds >= 0 && seconds <= TaskLimits.MaxDelaySeconds))
        {
            errors.Add(path, $"Must be a number of seconds from 0 to {TaskLimits.MaxDelaySeconds} ({TaskLimits.MaxDelaySeconds / 86_400} days).");
            return null;
        }

        return seconds;
    }

    private static string? ReadTenant(JsonElement value, string path, Errors errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        var text = value.ValueKind == JsonValueKind.String ? TextOf(value) : null;
        if (value.ValueKind == JsonValueKind.String && text is null)
        {
            errors.Add(path, LoneSurrogate);
        }
        else if (string.IsNullOrWhiteSpace(text) || text.Length > MaxTenantLength || text.Any(char.IsControl))
        {
            // The same rule as a tenant limit's key, so that every tenant a task can name can also be given a limit.
            errors.Add(path, $"Must be a non-empty string of at most {MaxTenantLength} characters, without control characters.");
        }
        else
        {
            return text;
        }

        return null;
    }

    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();

    private const string LoneSurrogate = "Contains a lone UTF-16 surrogate escape, which is not Unicode text.";

    /// <summary>
    /// A property's name, or its raw escaped form when it holds a lone surrogate escape, which System.Text.Json
    /// refuses to decode (with an InvalidOperationException that would otherwise be a 500).
    /// </summary>
    private static string NameOf(JsonProperty property)
    {
        try
        {
            return property.Name;
        }
        catch (InvalidOperationException)
        {
            return Encoding.UTF8.GetString(JsonMarshal.GetRawUtf8PropertyName(property));
        }
    }

    /// <summary>A string value, or null when it holds a lone surrogate escape (see <see cref="NameOf"/>).</summary>
    private static string? TextOf(JsonElement value)
    {
        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// The first string (value or property name) in <paramref name="payload"/> that PostgreSQL's <c>jsonb</c> cannot
    /// store, with its JSON path: a NUL character, or a UTF-16 surrogate without its pair. Both can only arrive as
    /// <c>\u</c> escapes in valid UTF-8 JSON, so a payload without one (nearly every payload) costs one vectorized scan.
    /// The escapes are read from the raw text: System.Text.Json refuses to decode a lone surrogate at all.
    /// </summary>
    private static (string Path, string Problem)? UnstorableText(JsonElement payload, string path)
    {
        if (JsonMarshal.GetRawUtf8Value(payload).IndexOf("\\u"u8) < 0)
        {
            return null;
        }

        return Find(payload, path);

        static (string Path, string Problem)? Find(JsonElement value, string path)
        {
            switch (value.ValueKind)
            {
                case JsonValueKind.String:
                    return Problem(JsonMarshal.GetRawUtf8Value(value)) is { } problem ? (path, problem) : null;
                case JsonValueKind.Object:
                    foreach (var property in value.EnumerateObject())
                    {
                        var rawName = JsonMarshal.GetRawUtf8PropertyName(property);
                        var child = $"{path}.{Encoding.UTF8.GetString(rawName)}";
                        if (Problem(rawName) is { } nameProblem)
                        {
                            return (child, $"The property name {char.ToLowerInvariant(nameProblem[0])}{nameProblem[1..]}");
                        }

                        if (Find(property.Value, child) is { } found)
                        {
                            return found;
                        }
                    }

                    return null;
                case JsonValueKind.Array:
                    var index = 0;
                    foreach (var item in value.EnumerateArray())
                    {
                        if (Find(item, $"{path}[{index++}]") is { } found)
                        {
                            return found;
                        }
                    }

                    return null;
                default:
                    return null;
            }
        }

        // Reads the escapes of one raw JSON string: a \u0000, a high surrogate not followed at once by a low one, or a
        // low one without a high one before it. Other escapes (\\, \", \n, ...) are stepped over whole, so "\\u0000"
        // (a backslash, then the text u0000) is not taken for one.
        static string? Problem(ReadOnlySpan<byte> raw)
        {
            var pendingHigh = -1;
            var i = 0;
            while (i < raw.Length)
            {
                if (raw[i] != '\\' || i + 1 >= raw.Length || raw[i + 1] != 'u')
                {
                    if (pendingHigh >= 0)
                    {
                        return LoneText(pendingHigh);
                    }

                    i += raw[i] == '\\' ? 2 : 1;
                    continue;
                }

                // The parser has checked that four hex digits follow.
                if (i + 6 > raw.Length || !int.TryParse(raw.Slice(i + 2, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code))
                {
                    break;
                }

                i += 6;
                if (code == 0)
                {
                    return "Contains a NUL character (\\u0000), which PostgreSQL cannot store; send such bytes base64-encoded instead.";
                }

                if (code is >= 0xDC00 and <= 0xDFFF)
                {
                    if (pendingHigh < 0)
                    {
                        return LoneText(code);
                    }

                    pendingHigh = -1;
                }
                else if (pendingHigh >= 0)
                {
                    return LoneText(pendingHigh);
                }
                else if (code is >= 0xD800 and <= 0xDBFF)
                {
                    pendingHigh = code;
                }
            }

            return pendingHigh >= 0 ? LoneText(pendingHigh) : null;
        }

        static string LoneText(int code) =>
            $"Contains a lone UTF-16 surrogate (\\u{code:x4}), which is not Unicode text; PostgreSQL cannot store it.";
    }

    private static int? ReadInt(JsonElement value, string path, int min, int max, Errors errors)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var number) || number < min || number > max)
        {
            errors.Add(path, min == int.MinValue ? "Must be a 32-bit integer." : $"Must be an integer from {min} to {max}.");
            return null;
        }

        return number;
    }

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        JsonValueKind.Object => "an object",
        _ => "nothing",
    };

    /// <summary>Problems by JSON path, in the shape of ASP.NET Core's validation problem details.</summary>
    private sealed class Errors
    {
        private readonly Dictionary<string, List<string>> _byPath = new(StringComparer.Ordinal);
        private readonly SortedSet<string> _unknownTypes = new(StringComparer.Ordinal);
        private bool _onlyUnknownTypes = true;

        public int Count { get; private set; }

        public void Add(string path, string message)
        {
            _onlyUnknownTypes = false;
            AddEntry(path, message);
        }

        public void AddUnknownType(string path, string type)
        {
            _unknownTypes.Add(type);
            AddEntry(path, $"Unknown task type '{type}'.");
        }

        public IResult ToProblem(TaskTypeCatalog catalog)
        {
            var errors = _byPath.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal);
            if (_unknownTypes.Count == 0)
            {
                return Problems.Invalid("Invalid task", errors);
            }

            // The answer names the types the API knows, so a client can fix a typo without reading the docs.
            var extensions = new Dictionary<string, object?> { ["knownTypes"] = catalog.Types, ["unknownTypes"] = _unknownTypes.ToArray() };
            var known = string.Join(", ", catalog.Types);
            return _onlyUnknownTypes
                ? TypedResults.ValidationProblem(
                    errors,
                    detail: $"Unknown task type {string.Join(", ", _unknownTypes.Select(t => $"'{t}'"))}. Known types: {known}.",
                    title: "Unknown task type",
                    extensions: extensions)
                : Problems.Invalid("Invalid task", errors, extensions);
        }

        private void AddEntry(string path, string message)
        {
            Count++;
            if (_byPath.Count >= MaxReportedErrors && !_byPath.ContainsKey(path))
            {
                return;
            }

            if (!_byPath.TryGetValue(path, out var list))
            {
                _byPath[path] = list = [];
            }

            list.Add(message);
        }
    }
}
