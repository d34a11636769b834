using System.Net.Mime;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using System.Text.Unicode;
using Fleet.Contracts;
using Fleet.Persistence;
using MassTransit;
using MassTransit.Serialization;
using Microsoft.Extensions.Logging;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// Reads the bodies on the task queues. MassTransit faults a body it cannot read into the queue's <c>_error</c>
/// queue before any consumer runs, so a task id it carries would never get a row. This deserializer wraps
/// MassTransit's own: a body that is not a readable task (not JSON, not UTF-8, a field of the wrong JSON type, nested
/// deeper than the serializer's 64 levels) but names a task (a UUID <c>taskId</c> at its top level, else an AMQP
/// <c>message_id</c>) becomes a stand-in task instead: that id, its <c>type</c> when that much is readable, and the
/// whole body in storable form as its payload (<see cref="StorableForm"/>). The receive context then carries an
/// <see cref="UnreadableTaskMessage"/>, and <see cref="ProcessTaskConsumer"/> records the task as failed without
/// running it. A body that names no task still faults, and the reason is logged.
/// </summary>
public sealed partial class TaskMessageDeserializer(IMessageDeserializer inner, ILogger logger) : IMessageDeserializer
{
    // Stand-ins are plain JSON whatever the content type of the body they stand for.
    private static readonly SystemTextJsonRawMessageSerializer StandIns = new(RawSerializerOptions.All);

    // Only the top level is read for the id; the reader skips deeper values without a depth limit of its own.
    private static readonly JsonReaderOptions Salvaging = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
        MaxDepth = int.MaxValue,
    };

    public ContentType ContentType => inner.ContentType;

    public void Probe(ProbeContext context) => inner.Probe(context);

    public SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress = null) =>
        inner.Deserialize(body, headers, destinationAddress);

    public MessageBody GetMessageBody(string text) => inner.GetMessageBody(text);

    public ConsumeContext Deserialize(ReceiveContext receiveContext)
    {
        ArgumentNullException.ThrowIfNull(receiveContext);
        Exception failure;
        try
        {
            // JSON is UTF-8 (RFC 8259); System.Text.Json checks only the strings it decodes, and the payload's raw
            // text, decoded later, would fail in the consumer.
            var body = receiveContext.Body.GetBytes();
            if (Utf8.IsValid(body))
            {
                // The task is read here rather than in the consume pipe (which then finds it cached), so that a body
                // whose fields have the wrong JSON types is caught too.
                var context = inner.Deserialize(receiveContext);
                if (!context.TryGetMessage<ProcessTask>(out var task))
                {
                    failure = new InvalidTaskMessageException("The body is not a task message.");
                }
                else if (Refusal(task.Message) is { } refusal)
                {
                    failure = new InvalidTaskMessageException(refusal);
                }
                else
                {
                    return context;
                }
            }
            else
            {
                failure = new InvalidTaskMessageException($"The body is not valid UTF-8 (at byte {FirstInvalidByte(body)}).");
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            failure = ex;
        }

        return StandIn(receiveContext, failure);
    }

    private ConsumeContext StandIn(ReceiveContext receiveContext, Exception failure)
    {
        var body = receiveContext.Body.GetBytes();
        var reason = $"The message could not be read as a task: {Explain(failure)}";
        var (taskId, type) = Salvage(body);
        var messageId = receiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var rabbit) ? rabbit.Properties?.MessageId : null;
        var queue = receiveContext.InputAddress?.AbsolutePath.Split('/')[^1] ?? "";
        if (taskId is null && string.IsNullOrWhiteSpace(messageId))
        {
            LogNoTaskId(queue, reason);
            ExceptionDispatchInfo.Throw(failure);
        }

        // The consumer resolves an empty task id from the message_id, as for any body without 'taskId'.
        using var payload = JsonDocument.Parse(StorableForm.Json(reason, body));
        var standIn = JsonSerializer.SerializeToUtf8Bytes(
            new ProcessTask { TaskId = taskId ?? Guid.Empty, Type = type ?? "", Payload = payload.RootElement }, SystemTextJsonMessageSerializer.Options);
        var serializerContext = StandIns.Deserialize(new BytesMessageBody(standIn), receiveContext.TransportHeaders, receiveContext.InputAddress);
        receiveContext.GetOrAddPayload(() => new UnreadableTaskMessage(reason));
        return new BodyConsumeContext(receiveContext, serializerContext);
    }

    /// <summary>
    /// Why a message that reads as a task is still not one a producer may send, or null. A priority outside
    /// <see cref="TaskLimits.MinPriority"/> to <see cref="TaskLimits.MaxPriority"/> is refused as the API and the
    /// submitter refuse it, rather than run at a made-up priority: the task is recorded failed with this reason.
    /// </summary>
    internal static string? Refusal(ProcessTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return task.Priority is < TaskLimits.MinPriority or > TaskLimits.MaxPriority
            ? $"'priority' must be an integer from {TaskLimits.MinPriority} to {TaskLimits.MaxPriority} (higher first), not {task.Priority}."
            : null;
    }

    /// <summary>The top-level <c>taskId</c> (when a UUID) and <c>type</c> (when a string) of a body, as far as it reads.</summary>
    private static (Guid? TaskId, string? Type) Salvage(ReadOnlySpan<byte> body)
    {
        Guid? taskId = null;
        string? type = null;
        var reader = new Utf8JsonReader(body, Salvaging);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return default;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                // Property names match as MassTransit's serializer matches them: ignoring case.
                var name = reader.GetString();
                reader.Read();
                if (reader.TokenType == JsonTokenType.String && string.Equals(name, "taskId", StringComparison.OrdinalIgnoreCase)
                    && reader.TryGetGuid(out var id))
                {
                    taskId = id;
                }
                else if (reader.TokenType == JsonTokenType.String && string.Equals(name, "type", StringComparison.OrdinalIgnoreCase))
                {
                    type = TryGetString(ref reader);
                }

                reader.Skip();
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // The rest is unreadable: keep what was found before it.
        }

        return (taskId, type);
    }

    /// <summary>A string value, or null when it does not decode (a lone surrogate escape, invalid UTF-8).</summary>
    private static string? TryGetString(ref Utf8JsonReader reader)
    {
        try
        {
            return reader.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The serializer's own words when it gave any (they name the JSON path), else the innermost error's.</summary>
    private static string Explain(Exception failure)
    {
        for (var ex = failure; ex is not null; ex = ex.InnerException)
        {
            if (ex is JsonException)
            {
                return ex.Message;
            }
        }

        return failure.GetBaseException().Message;
    }

    private static int FirstInvalidByte(ReadOnlySpan<byte> body)
    {
        var valid = 0;
        while (valid < body.Length && System.Text.Rune.DecodeFromUtf8(body[valid..], out _, out var consumed) == System.Buffers.OperationStatus.Done)
        {
            valid += consumed;
        }

        return valid;
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "A message on {Queue} could not be read as a task and has no task id (no 'taskId', no message_id), so it cannot be recorded; it goes to the error queue. {Reason}")]
    private partial void LogNoTaskId(string queue, string reason);
}

/// <summary>
/// On the receive context of a <see cref="TaskMessageDeserializer"/> stand-in: why the message could not be read
/// as a task. The consumer records the task as failed with <see cref="ErrorType"/> and this reason.
/// </summary>
public sealed record UnreadableTaskMessage(string Reason)
{
    public const string ErrorType = "InvalidMessage";
}

/// <summary>Puts a <see cref="TaskMessageDeserializer"/> around the deserializer of another factory, for one content type.</summary>
public sealed class TaskMessageDeserializerFactory(ISerializerFactory inner, ILogger logger) : ISerializerFactory
{
    public ContentType ContentType => inner.ContentType;

    public IMessageSerializer CreateSerializer() => inner.CreateSerializer();

    public IMessageDeserializer CreateDeserializer() => new TaskMessageDeserializer(inner.CreateDeserializer(), logger);
}
