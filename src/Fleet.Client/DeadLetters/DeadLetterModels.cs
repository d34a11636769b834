namespace Fleet.Client;

/// <summary>
/// One message of an <c>_error</c> queue, as <c>GET /dead-letters</c> and <c>fleet dead-letters list</c> show it.
/// </summary>
/// <param name="Queue">The error queue it is in, e.g. <c>fleet-cpu_error</c>.</param>
/// <param name="Lane">The queue it faulted on, where a replay sends it (the error queue's name without <c>_error</c>).</param>
/// <param name="MessageId">
/// What names it in a replay or discard: its AMQP <c>message_id</c>, else <c>sha256:</c> and the first 32 hex digits
/// of its body's SHA-256 (a message that names no task has no id of its own; equal bodies share this one).
/// </param>
/// <param name="Reason">MassTransit's fault message (<c>MT-Fault-Message</c>), cut at 2,000 characters.</param>
/// <param name="ExceptionType">The exception that faulted it (<c>MT-Fault-ExceptionType</c>).</param>
/// <param name="FaultedAt">When it faulted (<c>MT-Fault-Timestamp</c>).</param>
/// <param name="Redelivered">The broker's redelivered flag: true once it was listed before (or held by a consumer that went away).</param>
/// <param name="DeliveryCount">Quorum queues only: how often it was delivered and returned (<c>x-delivery-count</c>).</param>
/// <param name="Headers">Every header as text, each cut at 2,000 characters (the fault's stack trace is one of them).</param>
/// <param name="Body">The body: UTF-8 text, else base64 (<paramref name="BodyEncoding"/>), at most 64 KiB of it.</param>
/// <param name="BodyEncoding"><c>utf-8</c> or <c>base64</c>.</param>
/// <param name="BodyBytes">The whole body's size in bytes.</param>
/// <param name="BodyTruncated">True when <paramref name="Body"/> is only the first 64 KiB.</param>
public sealed record DeadLetter(
    string Queue,
    string Lane,
    string MessageId,
    string? Reason,
    string? ExceptionType,
    DateTimeOffset? FaultedAt,
    bool Redelivered,
    long? DeliveryCount,
    string? ContentType,
    IReadOnlyDictionary<string, string> Headers,
    string Body,
    string BodyEncoding,
    int BodyBytes,
    bool BodyTruncated);

/// <summary>An error queue's depth when it was read; <paramref name="Exists"/> is false until something faulted into it.</summary>
public sealed record DeadLetterQueueDepth(string Queue, bool Exists, long Messages);

/// <summary>The answer of a listing: each queue's depth, the dead letters read (oldest first per queue), and whether more wait.</summary>
public sealed record DeadLetterList(IReadOnlyList<DeadLetterQueueDepth> Queues, IReadOnlyList<DeadLetter> DeadLetters, bool Truncated);

/// <summary>
/// Which dead letters of a queue a replay or discard takes: those whose <see cref="DeadLetter.MessageId"/> is in
/// <paramref name="MessageIds"/>, or every one (<paramref name="MessageIds"/> null), optionally only those whose
/// exception type is <paramref name="ExceptionType"/> and whose reason contains <paramref name="ReasonContains"/>.
/// </summary>
public sealed record DeadLetterSelection(IReadOnlySet<string>? MessageIds, string? ExceptionType = null, string? ReasonContains = null)
{
    public bool Matches(DeadLetter letter)
    {
        ArgumentNullException.ThrowIfNull(letter);
        return (MessageIds is null || MessageIds.Contains(letter.MessageId))
            && (ExceptionType is null || string.Equals(letter.ExceptionType, ExceptionType, StringComparison.Ordinal))
            && (ReasonContains is null || (letter.Reason?.Contains(ReasonContains, StringComparison.OrdinalIgnoreCase) ?? false));
    }
}

/// <summary>What a replay or discard did: how many dead letters it took, and the named ids it did not find.</summary>
public sealed record DeadLetterOutcome(string Queue, string Action, int Count, IReadOnlyList<string> NotFound);

/// <summary>A replay that stopped: the broker refused or did not confirm a publish. What was replayed before stays replayed.</summary>
public sealed class DeadLetterReplayException : Exception
{
    public DeadLetterReplayException(string message, int replayed, Exception? innerException = null)
        : base(message, innerException) => Replayed = replayed;

    public DeadLetterReplayException()
    {
    }

    public DeadLetterReplayException(string message)
        : base(message)
    {
    }

    public DeadLetterReplayException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>How many were replayed (published, confirmed, removed) before it stopped.</summary>
    public int Replayed { get; }
}
