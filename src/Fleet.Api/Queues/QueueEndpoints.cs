using System.ComponentModel;
using System.Text.Json;
using Fleet.Api.Submission;
using Fleet.Client;
using Microsoft.AspNetCore.Http.Features;

namespace Fleet.Api.Queues;

/// <summary>The body of <c>POST /queues/{name}/pause</c>; the body itself is optional.</summary>
public sealed record PauseBody
{
    [Description("Why the lane is paused, for whoever looks at it later (at most 500 characters). Absent: none, or the reason it was already paused with.")]
    public string? Reason { get; init; }
}

/// <summary>A queue and whether it is paused.</summary>
public sealed record QueueView(
    [property: Description("The queue: fleet-cpu, fleet-io, or a queue declared in Api:Queues. Its dispatch queue ({name}.dispatch) pauses with it.")] string Name,
    [property: Description("True while no worker takes tasks from the lane or its dispatch queue.")] bool Paused,
    [property: Description("Since when it is paused; null when it is not.")] DateTimeOffset? PausedAt,
    [property: Description("Why, as the operator said; null when not given or not paused.")] string? Reason)
{
    [Description("Where its tasks run in a worker: cpu (the CPU lane's threads) or io (concurrent async work). In the answers of GET /queues.")]
    public string? Lane { get; init; }

    public static QueueView From(QueuePauseState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        return new QueueView(state.Queue, state.Paused, state.PausedAt, state.Reason) { Lane = state.Lane };
    }
}

/// <summary>
/// <c>/queues</c>: pause and resume a lane (scope write), and list the lanes with their state (scope read), through
/// the same <see cref="QueuePauses"/> as <c>fleet queue</c>. Workers read <c>fleet.queue_pauses</c> every
/// <c>Worker:PauseCheckSeconds</c> and stop or start consuming; nothing here talks to the broker.
/// </summary>
internal static class QueueEndpoints
{
    public static RouteGroupBuilder MapQueueWrites(this RouteGroupBuilder writes)
    {
        writes.MapPost("/queues/{name}/pause", PauseAsync)
            .WithName("PauseQueue")
            .WithSummary("Pause a lane: no worker takes tasks from it or its dispatch queue until it is resumed")
            .WithDescription("name is fleet-cpu, fleet-io or a declared queue (Api:Queues). The body is optional. Workers stop consuming within Worker:PauseCheckSeconds; " +
                "tasks they already hold finish, the rest stay ready in RabbitMQ, and workers started later do not consume the lane either. " +
                "Pausing a paused lane keeps its pausedAt and replaces its reason when one is given. 404 for an unknown name, 400 for a dispatch queue.")
            .Accepts<PauseBody>("application/json")
            .Produces<QueueView>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge);
        writes.MapPost("/queues/{name}/resume", ResumeAsync)
            .WithName("ResumeQueue")
            .WithSummary("Resume a paused lane; workers consume it again within Worker:PauseCheckSeconds")
            .WithDescription("Resuming a lane that is not paused changes nothing and answers the same. 404 for an unknown name, 400 for a dispatch queue.")
            .Produces<QueueView>()
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound);
        return writes;
    }

    public static RouteGroupBuilder MapQueueReads(this RouteGroupBuilder reads)
    {
        reads.MapGet("/queues", async (QueuePauses pauses, CancellationToken ct) =>
                (await pauses.ListAsync(ct).ConfigureAwait(false)).Select(QueueView.From).ToList())
            .WithName("ListQueues")
            .WithSummary("The queues (the built-in lanes and the declared ones), each with its lane and whether it is paused, since when and why")
            .Produces<IReadOnlyList<QueueView>>();
        return reads;
    }

    private static async Task<IResult> PauseAsync(string name, HttpContext http, QueuePauses pauses, Microsoft.Extensions.Options.IOptions<ApiOptions> options)
    {
        if (await RefusedAsync(name, pauses, http.RequestAborted).ConfigureAwait(false) is { } refused)
        {
            return refused;
        }

        string? reason = null;

        // No body at all (curl -X POST without -d) is a pause without a reason.
        if (http.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody != false)
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
                    return Problems.BadRequest("Not a JSON object", "The request body, when there is one, must be a JSON object such as {\"reason\": \"broker maintenance\"}.");
                }

                var errors = new Dictionary<string, string[]>(StringComparer.Ordinal);
                try
                {
                    foreach (var property in body.EnumerateObject())
                    {
                        switch (property.Name)
                        {
                            case "reason" when property.Value.ValueKind == JsonValueKind.Null:
                                break;
                            case "reason" when property.Value.ValueKind == JsonValueKind.String && property.Value.GetString()!.Trim().Length <= QueuePauses.MaxReasonLength:
                                reason = property.Value.GetString();
                                break;
                            case "reason":
                                errors["reason"] = [$"Must be a string of at most {QueuePauses.MaxReasonLength} characters."];
                                break;
                            default:
                                errors[property.Name] = ["Unknown field; a pause has only \"reason\"."];
                                break;
                        }
                    }
                }
                catch (InvalidOperationException)
                {
                    // System.Text.Json refuses to decode a lone surrogate escape.
                    return Problems.BadRequest("Invalid pause", "A name or the reason of the body contains a lone UTF-16 surrogate escape, which is not Unicode text.");
                }

                if (errors.Count > 0)
                {
                    return Problems.Invalid("Invalid pause", errors);
                }
            }
        }

        return TypedResults.Ok(QueueView.From(await pauses.PauseAsync(name, reason, http.RequestAborted).ConfigureAwait(false)));
    }

    private static async Task<IResult> ResumeAsync(string name, QueuePauses pauses, CancellationToken ct)
    {
        if (await RefusedAsync(name, pauses, ct).ConfigureAwait(false) is { } refused)
        {
            return refused;
        }

        await pauses.ResumeAsync(name, ct).ConfigureAwait(false);
        return TypedResults.Ok(new QueueView(name, false, null, null));
    }

    // Checked against fleet.queues, as `fleet queue` checks: a queue no longer in this API's Api:Queues can still hold
    // tasks that its workers serve, and may be paused.
    private static async Task<IResult?> RefusedAsync(string name, QueuePauses pauses, CancellationToken ct) => await pauses.CheckAsync(name, ct).ConfigureAwait(false) switch
    {
        null => null,
        { NotFound: true } problem => Problems.NotFound(problem.Problem),
        var problem => Problems.BadRequest("Not a queue", problem.Value.Problem),
    };
}
