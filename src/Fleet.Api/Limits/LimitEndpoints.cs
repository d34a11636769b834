using System.Text.Json;
using Fleet.Api.Submission;
using Fleet.Persistence.Limits;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Limits;

/// <summary>
/// <c>/limits</c>: set and remove (scope write), list and read (scope read) the rate and concurrency limits of
/// <c>fleet.limits</c>, through the same <see cref="LimitStore"/> and <see cref="LimitRules"/> as <c>fleet limit</c>.
/// The dispatcher of every API and worker process reads the table again within seconds; nothing here publishes.
/// </summary>
internal static class LimitEndpoints
{
    private static readonly string[] Fields = ["perSecond", "burst", "maxRunning"];

    public static RouteGroupBuilder MapLimitWrites(this RouteGroupBuilder writes)
    {
        writes.MapPut("/limits/{scope}/{key}", SetAsync)
            .WithName("SetLimit")
            .WithSummary("Create or replace the limit of a task type or a tenant")
            .WithDescription("scope is type or tenant. The body replaces the limit's numbers: a field left out is no such limit. " +
                "201 with the limit when it is new, 200 when it replaced one; 400 for a bad scope, key or number.")
            .Accepts<LimitBody>("application/json")
            .Produces<LimitView>()
            .Produces<LimitView>(StatusCodes.Status201Created)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        writes.MapDelete("/limits/{scope}/{key}", RemoveAsync)
            .WithName("DeleteLimit")
            .WithSummary("Remove a limit; the tasks it held back are dispatched without it")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
        return writes;
    }

    public static RouteGroupBuilder MapLimitReads(this RouteGroupBuilder reads)
    {
        reads.MapGet("/limits", async (LimitStore store, CancellationToken ct) =>
                (await store.ListAsync(ct).ConfigureAwait(false)).Select(LimitView.From).ToList())
            .WithName("ListLimits")
            .WithSummary("Every limit, types then tenants, with whether it is holding tasks back now (blockedReason)")
            .Produces<IReadOnlyList<LimitView>>();
        reads.MapGet("/limits/{scope}/{key}", GetAsync)
            .WithName("GetLimit")
            .WithSummary("One limit")
            .Produces<LimitView>()
            .ProducesProblem(StatusCodes.Status404NotFound);
        return reads;
    }

    private static async Task<IResult> SetAsync(string scope, string key, HttpContext http, LimitStore store, IOptions<ApiOptions> options)
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        if (!LimitRules.IsScope(scope))
        {
            errors["scope"] = [$"Must be {LimitRules.TypeScope} or {LimitRules.TenantScope}."];
        }

        if (!LimitRules.IsValidKey(key))
        {
            errors["key"] = [$"Must be {LimitRules.KeyRule}."];
        }

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
                return Problems.BadRequest("Not a JSON object", "The request body must be a JSON object with \"perSecond\", \"maxRunning\" or both.");
            }

            double? perSecond = null;
            int? burst = null, maxRunning = null;
            var unreadable = new HashSet<string>(StringComparer.Ordinal);
            try
            {
                foreach (var property in body.EnumerateObject())
                {
                    var value = property.Value;
                    switch (property.Name)
                    {
                        case "perSecond" when value.ValueKind == JsonValueKind.Null:
                            break;
                        case "perSecond" when value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var rate) && double.IsFinite(rate):
                            perSecond = rate;
                            break;
                        case "burst" or "maxRunning" when value.ValueKind == JsonValueKind.Null:
                            break;
                        case "burst" when value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var size):
                            burst = size;
                            break;
                        case "maxRunning" when value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var running):
                            maxRunning = running;
                            break;
                        case "perSecond":
                            unreadable.Add(property.Name);
                            errors["perSecond"] = ["Must be a number of tasks per second above 0 and at most 1,000,000."];
                            break;
                        case "burst" or "maxRunning":
                            unreadable.Add(property.Name);
                            errors[property.Name] = ["Must be an integer from 1 to 1,000,000."];
                            break;
                        default:
                            errors[property.Name] = [$"Unknown field; a limit has {string.Join(", ", Fields)}."];
                            break;
                    }
                }
            }
            catch (InvalidOperationException)
            {
                // System.Text.Json refuses to decode a lone surrogate escape in a name.
                return Problems.BadRequest("Invalid limit", "A field name of the body contains a lone UTF-16 surrogate escape, which is not Unicode text.");
            }

            // The rules see only what was read; a field refused above already has its problem.
            foreach (var (field, problem) in LimitRules.Check(
                unreadable.Contains("perSecond") ? 1 : perSecond, burst, unreadable.Contains("maxRunning") ? 1 : maxRunning))
            {
                errors.TryAdd(field, [problem]);
            }

            if (errors.Count > 0)
            {
                return Problems.Invalid("Invalid limit", errors);
            }

            var (row, created) = await store.SetAsync(scope, key, perSecond, burst, maxRunning, DateTimeOffset.UtcNow, http.RequestAborted).ConfigureAwait(false);
            var view = LimitView.From(row);
            return created ? TypedResults.Created($"/limits/{scope}/{Uri.EscapeDataString(key)}", view) : TypedResults.Ok(view);
        }
    }

    private static async Task<IResult> GetAsync(string scope, string key, LimitStore store, CancellationToken ct) =>
        LimitRules.IsScope(scope) && LimitRules.IsValidKey(key) && await store.GetAsync(scope, key, ct).ConfigureAwait(false) is { } row
            ? TypedResults.Ok(LimitView.From(row))
            : NotFound(scope, key);

    private static async Task<IResult> RemoveAsync(string scope, string key, LimitStore store, CancellationToken ct) =>
        LimitRules.IsScope(scope) && LimitRules.IsValidKey(key) && await store.RemoveAsync(scope, key, ct).ConfigureAwait(false)
            ? TypedResults.NoContent()
            : NotFound(scope, key);

    private static IResult NotFound(string scope, string key) => Problems.NotFound($"There is no limit for {scope} '{key}'.");
}
