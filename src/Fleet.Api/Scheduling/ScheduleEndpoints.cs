using System.Text.Json;
using Fleet.Api.Submission;
using Fleet.Persistence.Scheduling;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Scheduling;

/// <summary>
/// <c>/schedules</c>: create, pause, resume and remove (scope write), list and read (scope read). The task of a
/// schedule is validated by the same <see cref="TaskRequestReader"/> as <c>POST /tasks</c>.
/// </summary>
internal static class ScheduleEndpoints
{
    private static readonly string[] Fields = ["name", "cron", "timeZone", "task"];

    public static RouteGroupBuilder MapScheduleWrites(this RouteGroupBuilder writes)
    {
        writes.MapPost("/schedules", CreateAsync)
            .WithName("CreateSchedule")
            .WithSummary("Create a recurring schedule")
            .WithDescription("Each fire time of the cron expression (in timeZone) creates one task, exactly once even with several API replicas. " +
                "201 with the schedule and its nextFireAt; 409 when the name exists; 400 for a bad name, cron expression, time zone or task.")
            .Accepts<ScheduleBody>("application/json")
            .Produces<ScheduleView>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        writes.MapDelete("/schedules/{name}", RemoveAsync)
            .WithName("DeleteSchedule")
            .WithSummary("Remove a schedule; the tasks it created stay")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
        writes.MapPost("/schedules/{name}/pause", PauseAsync)
            .WithName("PauseSchedule")
            .WithSummary("Pause a schedule: it fires nothing until resumed")
            .Produces<ScheduleView>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        writes.MapPost("/schedules/{name}/resume", ResumeAsync)
            .WithName("ResumeSchedule")
            .WithSummary("Resume a schedule from its next fire time after now; ticks missed while paused are not fired")
            .Produces<ScheduleView>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        return writes;
    }

    public static RouteGroupBuilder MapScheduleReads(this RouteGroupBuilder reads)
    {
        reads.MapGet("/schedules", async (ScheduleStore store, CancellationToken ct) =>
                (await store.ListAsync(ct).ConfigureAwait(false)).Select(ScheduleView.From).ToList())
            .WithName("ListSchedules")
            .WithSummary("Every schedule by name, with its next and last fire time")
            .Produces<IReadOnlyList<ScheduleView>>();
        reads.MapGet("/schedules/{name}", GetAsync)
            .WithName("GetSchedule")
            .WithSummary("One schedule")
            .Produces<ScheduleView>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        return reads;
    }

    private static async Task<IResult> CreateAsync(
        HttpContext http, TaskRequestReader reader, ScheduleStore store, IOptions<ApiOptions> options,
        [FromKeyedServices(ScheduleFirer.ClockKey)] TimeProvider clock)
    {
        var (document, bodyError) = await JsonBody.ReadAsync(http.Request, options.Value.MaxTaskBytes, http.RequestAborted).ConfigureAwait(false);
        if (bodyError is not null)
        {
            return bodyError;
        }

        using (document)
        {
            var body = document!.RootElement;
            if (body.ValueKind != JsonValueKind.Object)
            {
                return Problems.BadRequest("Not a JSON object", "The request body must be a JSON object with \"name\", \"cron\" and \"task\".");
            }

            var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
            string? name = null, cron = null, timeZone = null;
            JsonElement task = default;
            try
            {
                foreach (var property in body.EnumerateObject())
                {
                    var value = property.Value;
                    switch (property.Name)
                    {
                        case "name":
                            name = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
                            break;
                        case "cron":
                            cron = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
                            break;
                        case "timeZone" when value.ValueKind is JsonValueKind.String or JsonValueKind.Null:
                            timeZone = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
                            break;
                        case "timeZone":
                            errors["timeZone"] = ["Must be an IANA time zone id string, e.g. \"Europe/Berlin\"."];
                            break;
                        case "task":
                            task = value;
                            break;
                        default:
                            errors[property.Name] = [$"Unknown field; a schedule has {string.Join(", ", Fields)}."];
                            break;
                    }
                }
            }
            catch (InvalidOperationException)
            {
                // System.Text.Json refuses to decode a lone surrogate escape in a name or a string.
                return Problems.BadRequest("Invalid schedule", "A name or a string of the body contains a lone UTF-16 surrogate escape, which is not Unicode text.");
            }

            if (!ScheduleNames.IsValid(name))
            {
                errors["name"] = [$"Required: {ScheduleNames.Rule}."];
            }

            timeZone = string.IsNullOrWhiteSpace(timeZone) ? CronSchedule.DefaultTimeZone : timeZone.Trim();
            var (schedule, cronError, zoneError) = CronSchedule.Parse(cron, timeZone);
            if (cron is null)
            {
                errors["cron"] = ["Required: a cron expression string, e.g. \"0 */5 * * * *\"."];
            }
            else if (cronError is not null)
            {
                errors["cron"] = [cronError];
            }

            if (zoneError is not null)
            {
                errors.TryAdd("timeZone", [zoneError]);
            }

            if (task.ValueKind != JsonValueKind.Object)
            {
                errors["task"] = ["Required: the task to create at each fire time, a JSON object as POST /tasks accepts."];
            }
            else if (task.TryGetProperty("notBefore", out _))
            {
                // A fixed time would be in the past from the second firing on; an offset from each fire time is what works.
                errors["task.notBefore"] = ["A schedule's task starts at its fire time; use delaySeconds to start it later than that."];
            }

            if (errors.Count > 0)
            {
                return Problems.Invalid("Invalid schedule", errors);
            }

            // The task exactly as POST /tasks would take it; its problems are answered as POST /tasks answers them.
            var (_, taskError) = reader.ReadTask(task);
            if (taskError is not null)
            {
                return taskError;
            }

            var row = await store.AddAsync(name!, cron!.Trim(), timeZone, schedule!, task.GetRawText(), clock.GetUtcNow(), http.RequestAborted).ConfigureAwait(false);
            return row is null
                ? Problems.Conflict("Schedule exists", $"A schedule named '{name}' exists; remove it first, or choose another name.")
                : TypedResults.Created($"/schedules/{name}", ScheduleView.From(row));
        }
    }

    private static async Task<IResult> GetAsync(string name, ScheduleStore store, CancellationToken ct) =>
        Found(name, ScheduleNames.IsValid(name) ? await store.GetAsync(name, ct).ConfigureAwait(false) : null);

    private static async Task<IResult> RemoveAsync(string name, ScheduleStore store, CancellationToken ct) =>
        ScheduleNames.IsValid(name) && await store.RemoveAsync(name, ct).ConfigureAwait(false)
            ? TypedResults.NoContent()
            : NotFound(name);

    private static async Task<IResult> PauseAsync(string name, ScheduleStore store, [FromKeyedServices(ScheduleFirer.ClockKey)] TimeProvider clock, CancellationToken ct) =>
        Found(name, ScheduleNames.IsValid(name) ? await store.PauseAsync(name, clock.GetUtcNow(), ct).ConfigureAwait(false) : null);

    private static async Task<IResult> ResumeAsync(string name, ScheduleStore store, [FromKeyedServices(ScheduleFirer.ClockKey)] TimeProvider clock, CancellationToken ct) =>
        Found(name, ScheduleNames.IsValid(name) ? await store.ResumeAsync(name, clock.GetUtcNow(), ct).ConfigureAwait(false) : null);

    private static IResult Found(string name, ScheduleRow? row) => row is null ? NotFound(name) : TypedResults.Ok(ScheduleView.From(row));

    private static IResult NotFound(string name) => Problems.NotFound($"There is no schedule named '{name}'.");
}
