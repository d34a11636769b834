using System.Text.Json;
using System.Text.Json.Nodes;

namespace Fleet.Client;

/// <summary>
/// The form in which <c>fleet.batch_callbacks.task</c> keeps a batch's onComplete task: the request as
/// <c>POST /tasks</c> accepts it, with the lane and id fixed at submit, so that the task created when the batch ends is
/// the one that was accepted (the API's lane settings may change meanwhile).
/// </summary>
public static class BatchCallbackTask
{
    /// <summary>The stored JSON of <paramref name="task"/>.</summary>
    internal static string ToJson(OutgoingTask task)
    {
        var message = task.Message;
        var json = new JsonObject
        {
            ["taskId"] = message.TaskId,
            ["type"] = message.Type,
            ["queue"] = task.Queue,
            ["payload"] = JsonNode.Parse(message.Payload.GetRawText()),
            ["priority"] = message.Priority,
            ["maxAttempts"] = message.MaxAttempts,
        };
        if (message.TimeoutSeconds is { } timeout)
        {
            json["timeoutSeconds"] = timeout;
        }

        if (message.Tenant is { } tenant)
        {
            json["tenant"] = tenant;
        }

        return json.ToJsonString();
    }

    /// <summary>The request that creates the callback task of <paramref name="batchId"/> from its stored JSON.</summary>
    public static TaskRequest FromJson(string json, Guid batchId)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        return new TaskRequest(root.GetProperty("type").GetString()!, root.GetProperty("payload").Clone())
        {
            TaskId = root.GetProperty("taskId").GetGuid(),
            Queue = root.GetProperty("queue").GetString(),
            Priority = root.GetProperty("priority").GetInt32(),
            MaxAttempts = root.GetProperty("maxAttempts").GetInt32(),
            TimeoutSeconds = root.TryGetProperty("timeoutSeconds", out var timeout) ? timeout.GetInt32() : null,
            Tenant = root.TryGetProperty("tenant", out var tenant) ? tenant.GetString() : null,
            AfterBatchId = batchId,
        };
    }
}
