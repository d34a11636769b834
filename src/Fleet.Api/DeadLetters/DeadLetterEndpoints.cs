using Fleet.Client;
using System.Globalization;
using System.Text.Json;
using Fleet.Api.Submission;
using Microsoft.Extensions.Options;
using RabbitMQ.Client.Exceptions;

namespace Fleet.Api.DeadLetters;

/// <summary>
/// <c>/dead-letters</c>: list (scope read) the messages of the lanes' <c>_error</c> queues with their reason, and
/// replay or discard them (scope write), one by one (by queue and message id) or all of a queue, through
/// <see cref="DeadLetterQueues"/>, which <c>fleet dead-letters</c> shares.
/// </summary>
internal static class DeadLetterEndpoints
{
    public static RouteGroupBuilder MapDeadLetterWrites(this RouteGroupBuilder writes)
    {
        writes.MapPost("/dead-letters/replay", (HttpContext http, DeadLetterQueues queues, QueueCatalog catalog, IOptions<ApiOptions> options) =>
                TakeAsync(http, options.Value, catalog, (queue, selection, ct) => queues.ReplayAsync(queue, selection, ct)))
            .WithName("ReplayDeadLetters")
            .WithSummary("Send dead letters back to the queue they faulted on")
            .WithDescription("Body: {\"queue\": \"fleet-cpu_error\", \"messageIds\": [...]} or {\"queue\": ..., \"all\": true, \"filter\": {\"exceptionType\", \"reasonContains\"}}. " +
                "Each is published with a publisher confirm before it leaves the error queue: a crash in between duplicates it, never loses it. " +
                "200 with the count and the named ids not found; 400 bad body; 503 the broker refused a publish (what was replayed before stays replayed).")
            .Accepts<DeadLetterRequest>("application/json")
            .Produces<DeadLetterOutcome>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        writes.MapPost("/dead-letters/discard", (HttpContext http, DeadLetterQueues queues, QueueCatalog catalog, IOptions<ApiOptions> options) =>
                TakeAsync(http, options.Value, catalog, (queue, selection, ct) => queues.DiscardAsync(queue, selection, ct)))
            .WithName("DiscardDeadLetters")
            .WithSummary("Remove dead letters for good")
            .WithDescription("The same body as replay. 200 with the count and the named ids not found; 400 bad body; 503 the broker did not answer.")
            .Accepts<DeadLetterRequest>("application/json")
            .Produces<DeadLetterOutcome>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        return writes;
    }

    public static RouteGroupBuilder MapDeadLetterReads(this RouteGroupBuilder reads)
    {
        reads.MapGet("/dead-letters", ListAsync)
            .WithName("ListDeadLetters")
            .WithSummary("The messages of the queues' _error queues with their fault reason, oldest first; nothing is removed")
            .WithDescription($"Query: queue (an error queue: {{queue}}_error or {{queue}}.dispatch_error of fleet-cpu, fleet-io or a queue of Api:Queues; default all), limit (1 to {DeadLetterQueues.MaxLimit}, default {DeadLetterQueues.DefaultLimit}). " +
                "Each queue's depth, the dead letters, and truncated when more wait. 400 a bad queue or limit; 503 the broker did not answer.")
            .Produces<DeadLetterList>()
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        return reads;
    }

    private static async Task<IResult> ListAsync(string? queue, string? limit, DeadLetterQueues queues, QueueCatalog catalog, CancellationToken ct)
    {
        var size = DeadLetterQueues.DefaultLimit;
        if (limit is not null && (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out size) || size is < 1 or > DeadLetterQueues.MaxLimit))
        {
            return Problems.BadRequest("Invalid limit", $"limit must be an integer from 1 to {DeadLetterQueues.MaxLimit}.");
        }

        var errorQueues = DeadLetterQueues.QueuesOf(catalog);
        if (queue is not null && !errorQueues.Contains(queue))
        {
            return Problems.BadRequest("Unknown queue", $"queue must be one of {string.Join(", ", errorQueues)}.");
        }

        return await BrokerAsync(async () => TypedResults.Ok(await queues.ListAsync(queue is null ? errorQueues : [queue], size, ct).ConfigureAwait(false))).ConfigureAwait(false);
    }

    private static async Task<IResult> TakeAsync(HttpContext http, ApiOptions options, QueueCatalog catalog, Func<string, DeadLetterSelection, CancellationToken, Task<DeadLetterOutcome>> take)
    {
        var (document, bodyError) = await JsonBody.ReadAsync(http.Request, options.MaxTaskBytes, http.RequestAborted).ConfigureAwait(false);
        if (bodyError is not null)
        {
            return bodyError;
        }

        using (document)
        {
            var (queue, selection, errors) = Read(document!.RootElement, DeadLetterQueues.QueuesOf(catalog));
            if (errors.Count > 0)
            {
                return Problems.Invalid("Invalid dead-letter request", errors);
            }

            return await BrokerAsync(async () =>
            {
                try
                {
                    return TypedResults.Ok(await take(queue!, selection!, http.RequestAborted).ConfigureAwait(false));
                }
                catch (DeadLetterReplayException ex)
                {
                    return TypedResults.Problem(ex.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Replay stopped",
                        extensions: new Dictionary<string, object?> { ["replayed"] = ex.Replayed });
                }
            }).ConfigureAwait(false);
        }
    }

    /// <summary>The request's queue and selection, or what is wrong with each field.</summary>
    private static (string? Queue, DeadLetterSelection? Selection, Dictionary<string, string[]> Errors) Read(JsonElement body, IReadOnlyList<string> errorQueues)
    {
        var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
        if (body.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = ["Must be a JSON object with \"queue\" and \"messageIds\" or \"all\": true."];
            return (null, null, errors);
        }

        DeadLetterRequest? request;
        try
        {
            request = body.Deserialize<DeadLetterRequest>(JsonSerializerOptions.Web);
        }
        catch (JsonException ex)
        {
            errors[ex.Path is { Length: > 2 } path ? path[2..] : "body"] = ["Has the wrong JSON type: queue and the filter's fields are strings, messageIds an array of strings, all true or false."];
            return (null, null, errors);
        }

        if (request?.Queue is not { } queue || !errorQueues.Contains(queue))
        {
            errors["queue"] = [$"Must be one of {string.Join(", ", errorQueues)}."];
        }

        var all = request?.All == true;
        var ids = request?.MessageIds;
        if (all == (ids is not null))
        {
            errors["messageIds"] = ["Name the dead letters (messageIds, a non-empty array) or take them all (\"all\": true), not both."];
        }
        else if (ids is not null && (ids.Count == 0 || ids.Any(string.IsNullOrEmpty)))
        {
            errors["messageIds"] = ["Must be a non-empty array of message ids, as GET /dead-letters shows them."];
        }

        if (request?.Filter is not null && !all)
        {
            errors["filter"] = ["Only with \"all\": true; named dead letters are taken whatever their reason."];
        }

        if (errors.Count > 0)
        {
            return (null, null, errors);
        }

        var selection = new DeadLetterSelection(
            ids is null ? null : ids.ToHashSet(StringComparer.Ordinal),
            NullIfEmpty(request!.Filter?.ExceptionType),
            NullIfEmpty(request.Filter?.ReasonContains));
        return (request.Queue, selection, errors);
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>Runs a broker operation; a broker that cannot be reached is a 503 that says so.</summary>
    private static async Task<IResult> BrokerAsync(Func<Task<IResult>> operation)
    {
        try
        {
            return await operation().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is BrokerUnreachableException or OperationInterruptedException or AlreadyClosedException or TimeoutException)
        {
            return TypedResults.Problem($"RabbitMQ did not answer: {ex.Message}", statusCode: StatusCodes.Status503ServiceUnavailable, title: "Broker unavailable");
        }
    }
}

/// <summary>The body of <c>POST /dead-letters/replay</c> and <c>/discard</c>.</summary>
/// <param name="Queue">The error queue, e.g. <c>fleet-cpu_error</c>.</param>
/// <param name="MessageIds">The dead letters to take, by the <c>messageId</c> the listing shows; or null with <paramref name="All"/>.</param>
/// <param name="All">True: every dead letter of the queue (that the filter matches).</param>
/// <param name="Filter">With <paramref name="All"/>: only those of this exception type and whose reason contains this text.</param>
internal sealed record DeadLetterRequest(string? Queue, IReadOnlyList<string>? MessageIds, bool? All, DeadLetterFilter? Filter);

/// <summary>Narrows <c>"all": true</c>: the exact exception type, and text the reason contains (any case).</summary>
internal sealed record DeadLetterFilter(string? ExceptionType, string? ReasonContains);
