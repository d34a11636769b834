using System.Text.Json.Nodes;
using Microsoft.AspNetCore.OpenApi;

namespace Fleet.Api;

/// <summary>
/// Request examples in the OpenAPI document for the operations whose bodies compose or operate on tasks, so that a reader
/// of <c>/openapi/v1.json</c> sees a chain, a batch callback, a unique task, a bulk requeue, a dead-letter replay and a
/// pause without the docs. Keyed by the endpoints' names (<c>WithName</c>); the docs/ pages show the same requests.
/// </summary>
internal static class OpenApiExamples
{
    private static readonly Dictionary<string, string> Requests = new(StringComparer.Ordinal)
    {
        ["SubmitTask"] = """
            {"type": "sleep", "payload": {"ms": 200}, "uniqueKey": "nightly-export",
             "then": [{"type": "sha256", "payload": {"size_kb": 64, "rounds": 1}}, {"type": "noop"}]}
            """,
        ["SubmitBatch"] = """
            {"tasks": [{"type": "sieve", "payload": {"limit": 2000000}}, {"type": "sieve", "payload": {"limit": 3000000}}],
             "onComplete": {"type": "noop", "payload": {}}}
            """,
        ["RequeueTasks"] = """{"status": ["failed", "timed_out"], "type": "http-get", "limit": 100}""",
        ["ReplayDeadLetters"] = """{"queue": "fleet-io_error", "all": true, "filter": {"reasonContains": "not valid UTF-8"}}""",
        ["DiscardDeadLetters"] = """{"queue": "fleet-cpu_error", "messageIds": ["sha256:d2ad9277baaee14856d20ec2b21f87a0"]}""",
        ["PauseQueue"] = """{"reason": "upstream maintenance until 14:00"}""",
    };

    /// <summary>Adds each example to its operation's JSON request body.</summary>
    public static OpenApiOptions AddFleetRequestExamples(this OpenApiOptions options) =>
        options.AddOperationTransformer((operation, context, _) =>
        {
            var name = context.Description.ActionDescriptor.EndpointMetadata.OfType<IEndpointNameMetadata>().FirstOrDefault()?.EndpointName;
            if (name is not null && Requests.TryGetValue(name, out var example)
                && operation.RequestBody?.Content?.TryGetValue("application/json", out var media) == true)
            {
                media.Example = JsonNode.Parse(example);
            }

            return Task.CompletedTask;
        });
}
