namespace Fleet.Client;

/// <summary>The kind of RabbitMQ queue the lanes and their error queues are.</summary>
public enum BrokerQueueType
{
    /// <summary>A queue that lives on one broker node: its messages are gone when that node's disk is.</summary>
    Classic,

    /// <summary>A queue replicated by Raft over the cluster's nodes: a message is confirmed once a majority holds it.</summary>
    Quorum,
}

/// <summary>
/// The declare arguments of every durable queue Fleet owns, in one place. RabbitMQ (3.10: no per-vhost default
/// type) compares a queue's arguments at every declare and closes the channel (406 PRECONDITION_FAILED) when they
/// differ, so the workers, the API, <see cref="FleetClient"/>, the CLI and the broker definitions must all send the
/// same dictionary for the same queue. The type is chosen by the <c>RabbitMq:QueueType</c> setting
/// (<see cref="RabbitMqAddress.QueueType"/>); moving a running deployment from one type to the other is
/// <c>fleet queues migrate</c>, because a queue's type cannot change in place.
/// </summary>
public static class QueueTopology
{
    /// <summary>The configuration key (environment <c>RabbitMq__QueueType</c>).</summary>
    public const string QueueTypeKey = "RabbitMq:QueueType";

    /// <summary>
    /// The type a deployment that says nothing gets: quorum, RabbitMQ's choice for data that must survive a node, as
    /// fast as classic on one node here and a third of its memory per queued message (docs/benchmarks.md).
    /// </summary>
    public const BrokerQueueType DefaultQueueType = BrokerQueueType.Quorum;

    /// <summary>Arguments of a lane queue (<c>fleet-cpu</c>, <c>fleet-io</c>, user lanes) and of its <c>_error</c>/<c>_skipped</c> queues.</summary>
    public static Dictionary<string, object?> LaneArguments(BrokerQueueType type) => type switch
    {
        // Classic stays without arguments: that is how every existing deployment declared its lanes.
        BrokerQueueType.Classic => [],
        BrokerQueueType.Quorum => new() { ["x-queue-type"] = "quorum" },
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    /// <summary>
    /// The delays of the retry rungs older versions declared for each lane, 1 s, 2 s, 4 s ... 4096 s: delay queues that
    /// held a retry until its backoff passed and then dead-lettered it into the lane. Retries now wait in PostgreSQL
    /// (the due relay publishes them at their <c>not_before</c>) and nothing declares a rung any more; the names and
    /// arguments stay for <c>fleet queues migrate</c>, which moves the rungs that still exist on an upgraded broker.
    /// </summary>
    public static IReadOnlyList<int> RetryRungSeconds { get; } = [.. Enumerable.Range(0, 13).Select(i => 1 << i)];

    /// <summary>The retry rung of <paramref name="lane"/> whose messages wait <paramref name="seconds"/>: <c>{lane}.retry.{seconds}s</c>.</summary>
    public static string RetryRungName(string lane, int seconds) => $"{lane}.retry.{seconds}s";

    /// <summary>Every retry rung of <paramref name="lane"/>, shortest delay first.</summary>
    public static IReadOnlyList<string> RetryRungNames(string lane) => [.. RetryRungSeconds.Select(seconds => RetryRungName(lane, seconds))];

    /// <summary>
    /// Arguments of an older version's retry rung of <paramref name="lane"/>: a queue nobody consumes, whose messages
    /// expire after their per-message TTL and are dead-lettered back into the lane.
    /// </summary>
    public static Dictionary<string, object?> RetryRungArguments(BrokerQueueType type, string lane)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(lane);
        var arguments = LaneArguments(type);
        arguments["x-dead-letter-exchange"] = "";
        arguments["x-dead-letter-routing-key"] = lane;
        if (type == BrokerQueueType.Quorum)
        {
            // A quorum queue dead-letters at most once by default: a node lost while a retry expires would drop it.
            // At-least-once dead-lettering requires reject-publish overflow (RabbitMQ 3.10+).
            arguments["x-dead-letter-strategy"] = "at-least-once";
            arguments["x-overflow"] = "reject-publish";
        }

        return arguments;
    }

    /// <summary>Reads a <c>RabbitMq:QueueType</c> value: <c>classic</c> or <c>quorum</c>, any case; empty means the default.</summary>
    public static BrokerQueueType ParseQueueType(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" => DefaultQueueType,
        "classic" => BrokerQueueType.Classic,
        "quorum" => BrokerQueueType.Quorum,
        _ => throw new FormatException($"{QueueTypeKey} (environment RabbitMq__QueueType) must be 'classic' or 'quorum', not '{value}'."),
    };
}
